#!/bin/sh
# Live migration over the RDMA transport on soft-RoCE: vmio-migrate recv
# and send over rdma:// (the guest kernel predates PAGEMAP_SCAN, so the
# demo region is sent in one stopped round), digests compared; the
# auto address form picking RDMA; a receiver killed mid-stream.
. "${VM_LIB:-/vm/guest/lib.sh}"

t rdma_up vm_rdma_up || exit 1
A=$VMIO_RDMA_ADDR
W=/tmp/migrate-rdma
mkdir -p $W

migrate() { # ADDR-FORM PORT SIZE
    rm -f $W/digest $W/recv.out
    vmio-migrate recv --listen "$1$A:$2" --digest-out $W/digest >$W/recv.out 2>$W/recv.err &
    R=$!
    vm_wait 10 grep -q listening $W/recv.out || return 1
    vmio-migrate send --to "$1$A:$2" --demo-size "$3" --track none --writers 1 \
        >$W/send.out 2>$W/send.err || { cat $W/send.err; return 1; }
    wait $R || { cat $W/recv.err; return 1; }
    d=$(cat $W/digest)
    [ -n "$d" ] && grep -q "$d" $W/send.out
}

t migrate_rdma migrate rdma:// 7100 64M
t migrate_rdma_auto migrate "" 7101 16M

# The receiver dies mid-stream: the sender fails with a clear error.
killed() {
    vmio-migrate recv --listen "rdma://$A:7102" >$W/recv.out 2>&1 &
    R=$!
    vm_wait 10 grep -q listening $W/recv.out || return 1
    ( sleep 6; kill -9 $R ) &
    if vmio-migrate send --to "rdma://$A:7102" --demo-size 128M --track none --writers 0 \
            --codecs raw --link 10MB/s >$W/send.out 2>$W/send.err; then
        echo "send succeeded although the receiver was killed"; return 1
    fi
    cat $W/send.err
    grep -q "vmio_migrate_send: sending round 0" $W/send.err
}
t migrate_rdma_receiver_killed killed
