#!/bin/sh
# Guest side of bench/rdma.sh (runs in the tests/vm guest on soft-RoCE):
# perftest and libvmio on the same rxe device in one run.
#   1. ib_write_bw / ib_read_bw at 1 MiB against vmio-bench storage over
#      RDMA (vmiod, image in RAM) at 1 MiB, QD16, writes and reads;
#   2. ib_send_lat (8 bytes) against vmio-bench pingpong --mode send;
#   3. client CPU seconds per GiB moved: vmio:// over RDMA against TCP.
# Results go back to the host as rdma-bench.txt (key=value lines) and the
# JSON files.
. "${VM_LIB:-/vm/guest/lib.sh}"
t rdma_up vm_rdma_up || exit 1
A=$VMIO_RDMA_ADDR
D=$VMIO_RDMA_DEV
SECS=8
R=/tmp/bench
mkdir -p $R/export
OUT=$R/rdma-bench.txt
: >$OUT

perf_bw() { # TOOL: server and client on the same device, 1 MiB messages
    timeout 300 $1 -R -d $D -s 1048576 -n 250 -F >$R/$1.srv 2>&1 &
    sleep 1
    timeout 300 $1 -R -d $D -s 1048576 -n 250 -F $A >$R/$1.cli 2>&1
    wait
    cat $R/$1.cli >&2
    awk '$1 == 1048576 {print $4}' $R/$1.cli | tail -1
}
echo "ib_write_bw_MBps=$(perf_bw ib_write_bw)" >>$OUT
echo "ib_read_bw_MBps=$(perf_bw ib_read_bw)" >>$OUT

# libvmio storage through vmiod; the image lives in RAM.
printf 'bench-secret-0123456789abcdef' >$R/secret
chmod 600 $R/secret
export VMIO_SECRET_FILE=$R/secret
vmiod -f -l "$A:10810" -e "img=$R/export" -s $R/secret --rdma on >$R/vmiod.log 2>&1 &
VMIOD=$!
sleep 1
U="vmio://$A/img/bench.raw"
vmio-bench storage --rw write --bs 1M --qd 16 --size 256M --runtime 1 "$U?transport=tcp" >/dev/null
run_storage() { # NAME TRANSPORT RW [extra]
    vmio-bench storage --rw $3 --bs 1M --qd 16 --size 256M --runtime $SECS --json $4 \
        "$U?transport=$2" >$R/$1.json
    cat $R/$1.json
    mbps=$(sed -n 's/.*"mb_per_s": *\([0-9.]*\).*/\1/p' $R/$1.json)
    cpu=$(sed -n 's/.*"client_cpu_s": *\([0-9.]*\).*/\1/p' $R/$1.json)
    bytes=$(sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p' $R/$1.json)
    echo "${1}_MBps=$mbps" >>$OUT
    echo "${1}_cpu_s=$cpu" >>$OUT
    echo "${1}_bytes=$bytes" >>$OUT
}
run_storage vmio_rdma_write rdma write --register
run_storage vmio_rdma_read rdma read --register
run_storage vmio_rdma_bounce_read rdma read
run_storage vmio_tcp_write tcp write
run_storage vmio_tcp_read tcp read
# The inline threshold: the same small reads and writes with every request
# inline (rdma-inline=1M) and every one by one-sided RDMA (rdma-inline=0).
for bs in 4k 16k 64k 256k; do
    for rw in read write; do
        for mode in inline:1048576 rdma:0; do
            name=thr_${rw}_${bs}_${mode%%:*}
            vmio-bench storage --rw $rw --bs $bs --qd 16 --size 256M --runtime 4 --json \
                --register "$U?transport=rdma&rdma-inline=${mode#*:}" >$R/$name.json
            echo "${name}_MBps=$(sed -n 's/.*"mb_per_s": *\([0-9.]*\).*/\1/p' $R/$name.json)" >>$OUT
        done
    done
done
kill $VMIOD
wait $VMIOD 2>/dev/null

# Ping-pong: 8 bytes one way, ib_send_lat and the vmio RDMA transport (busy
# polling, as perftest polls) in three interleaved rounds (single runs
# swing by 2x and more under TCG); then a size sweep for the table.
vmio-bench pingpong --server --listen "$A:18600" --transport rdma --busy-poll 1000 >$R/pp.srv 2>&1 &
PP=$!
sleep 1
for round in 1 2 3; do
    timeout 120 ib_send_lat -R -d $D -s 8 -n 5000 -F >$R/lat.srv 2>&1 &
    LS=$!
    sleep 1
    timeout 120 ib_send_lat -R -d $D -s 8 -n 5000 -F $A >$R/lat.cli 2>&1
    wait $LS
    cat $R/lat.cli
    echo "ib_send_lat_us_$round=$(awk '$1 == 8 {print $5}' $R/lat.cli | tail -1)" >>$OUT
    vmio-bench pingpong --connect "$A:18600" --transport rdma --busy-poll 1000 --mode send \
        --sizes 8 --iters 5000 --json >$R/pp8-$round.json
    cat $R/pp8-$round.json
    echo "vmio_send_lat_us_$round=$(sed -n 's/.*"median": *\([0-9.]*\).*/\1/p' $R/pp8-$round.json | head -1)" >>$OUT
done
vmio-bench pingpong --connect "$A:18600" --transport rdma --busy-poll 1000 --mode send \
    --sizes 1..1M --iters 300 --json >$R/pp-send.json
vmio-bench pingpong --connect "$A:18600" --transport rdma --mode write --sizes 1..1M --iters 300 --json >$R/pp-write.json
vmio-bench pingpong --connect "$A:18600" --transport rdma --mode read --sizes 1..1M --iters 300 --json >$R/pp-read.json
kill $PP
wait $PP 2>/dev/null
vmio-bench pingpong --server --listen "$A:18601" --transport tcp >$R/pp-tcp.srv 2>&1 &
PP=$!
sleep 1
vmio-bench pingpong --connect "$A:18601" --transport tcp --mode send --sizes 1..1M --iters 300 --json >$R/pp-tcp.json
kill $PP
wait $PP 2>/dev/null
cat $OUT
for f in $OUT $R/*.json $R/*.cli; do vm_export "$f"; done
