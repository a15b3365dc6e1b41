#!/bin/bash
# The scheduling effect of VM groups on one host (issue 7, "Measurements";
# docs/performance.md, "VM groups: scheduling effect"): a communication-
# heavy parallel job (bench/group-job: N processes, all-to-all messages
# every round) under competing load (CPU hogs), with the job's processes
#   alone      no load at all (the reference),
#   alone-gcpus no load, the job confined to the group's CPUs (what the
#              smaller CPU set alone does to it: the control of "dedicated"),
#   free       sharing every CPU with the load under the host scheduler,
#   weight     in a cgroup with a high CPU weight, the load in another
#              cgroup with the default weight: what vmio-group's group
#              weight does on KVM (cpu_shares of the members' cgroups),
#   dedicated  in a cgroup whose cpuset is the group's CPUs (all but the
#              housekeeping CPU 0), the load confined to CPU 0, plus the
#              weight: what vmio-group's dedicated CPUs + housekeeping do on
#              KVM (the members' vCPUs pinned to the group's CPUs, other VMs
#              moved off them, emulator threads on the housekeeping CPUs).
# Reported: the median completion time of RUNS runs per setting, and its
# ratio to "free". Then vmio-bench pingpong over TCP loopback with both
# ends on the same CPU and on two different CPUs (a one-socket machine
# has no inter-socket path; the numbers say so).
#
#   bench/group-sched.sh [--runs N] [--procs N] [--rounds R] [--work W]
#                        [--hogs N] [--no-pingpong]
#   bench/group-sched.sh --vm [--runs N] [--hogs N] [--vm-rounds R] [--vm-work W]
#
# --vm measures instead the job across two TCG domains of a private
# libvirtd, grouped by vmio-group (see vm_bench below; needs the guest
# kernel and busybox the group-qemu integration test leaves in the build
# dir, and a static libc for the guests' group-job).
#
# Works on cgroup v2 (cpu.weight, cpuset.cpus, a cpuset partition "root"
# when the kernel grants it) and on v1 (cpu.shares, cpuset). Needs root
# for the cgroups and at least 2 CPUs. Raw results: bench/out/group-sched-*.json.
# Environment: BUILD_DIR (see bench/lib.sh).
. "$(dirname "$0")/lib.sh"

RUNS=5 PROCS=4 ROUNDS=20000 WORK=2000 HOGS=3 PINGPONG=1 VM=0 VM_ROUNDS=200000 VM_WORK=500
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --hogs) HOGS=$2; shift 2 ;;
    --no-pingpong) PINGPONG=0; shift ;;
    --vm) VM=1; PINGPONG=0; shift ;;
    --vm-rounds) VM_ROUNDS=$2; shift 2 ;;
    --vm-work) VM_WORK=$2; shift 2 ;;
    -h | --help) sed -n '2,/^\. /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (cgroups)"
NCPU=$(nproc)
[ "$NCPU" -ge 2 ] || die "needs at least 2 CPUs"
require_cmd taskset python3

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    say "setting up $BUILD_DIR (release build)"
    meson setup "$BUILD_DIR" --buildtype=release -Dtests=disabled -Dman=disabled >/dev/null
fi
case $BUILD_DIR in /*) B=$BUILD_DIR ;; *) B=$BENCH_ROOT/$BUILD_DIR ;; esac
ninja -C "$B" bench/group-job >/dev/null || die "build failed (ninja -C $B bench/group-job)"
JOB=$B/bench/group-job
VMIO_BENCH=$B/cli/vmio-bench
if [ "$PINGPONG" = 1 ] && ! ninja -C "$B" cli/vmio-bench >/dev/null; then
    [ -x "$VMIO_BENCH" ] || die "build failed (ninja -C $B cli/vmio-bench)"
    say "WARNING: cli/vmio-bench does not build now; using the one already built"
fi
check_load
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

HOUSEKEEPING=0
GROUP_CPUS=1-$((NCPU - 1))
[ "$NCPU" -gt 2 ] || GROUP_CPUS=1
WEIGHT_V2=10000 # cgroup v2 cpu.weight of the job (the load keeps 100)
SHARES_V1=102400 # cgroup v1 cpu.shares of the job (the load keeps 1024)

# ---- cgroups: "job" and "load", v2 or v1 -------------------------------
CG=/sys/fs/cgroup
CG_NAME=vmio-bench-$$
PARTITION=none
if [ -f $CG/cgroup.controllers ]; then
    CG_VER=2
    grep -qw cpu $CG/cgroup.controllers && grep -qw cpuset $CG/cgroup.controllers ||
        die "cgroup v2 without the cpu and cpuset controllers"
    echo "+cpu +cpuset" >$CG/cgroup.subtree_control 2>/dev/null || true
    cg_dirs() { echo "$CG/$CG_NAME-$1"; }
else
    CG_VER=1
    [ -d $CG/cpu ] && [ -d $CG/cpuset ] || die "no cgroup v1 cpu and cpuset hierarchies"
    cg_dirs() { echo "$CG/cpu/$CG_NAME-$1 $CG/cpuset/$CG_NAME-$1"; }
fi
cg_make() { # NAME CPUS WEIGHT(v2)|'' : create (CPUS '' = all, no weight = default)
    local d
    for d in $(cg_dirs "$1"); do mkdir -p "$d"; done
    if [ $CG_VER = 2 ]; then
        d=$CG/$CG_NAME-$1
        [ -z "$3" ] || echo "$3" >"$d/cpu.weight"
        if [ -n "$2" ]; then
            echo "$2" >"$d/cpuset.cpus"
        fi
    else
        [ -z "$3" ] || echo "$SHARES_V1" >"$CG/cpu/$CG_NAME-$1/cpu.shares"
        cat $CG/cpuset/cpuset.mems >"$CG/cpuset/$CG_NAME-$1/cpuset.mems"
        if [ -n "$2" ]; then
            echo "$2" >"$CG/cpuset/$CG_NAME-$1/cpuset.cpus"
        else
            cat $CG/cpuset/cpuset.cpus >"$CG/cpuset/$CG_NAME-$1/cpuset.cpus"
        fi
    fi
}
cg_join() { # NAME PID
    local d
    for d in $(cg_dirs "$1"); do echo "$2" >"$d/cgroup.procs"; done
}
cg_remove() {
    local n d
    for n in job load; do
        for d in $(cg_dirs $n); do [ ! -d "$d" ] || rmdir "$d" 2>/dev/null || true; done
    done
}
VM_LV='' VM_LOAD_CG=''
cleanup_all() {
    stop_hogs
    cg_remove
    if [ -n "$VM_LV" ]; then
        "$BENCH_ROOT/scripts/libvirt-local.sh" stop --dir "$VM_LV" >/dev/null 2>&1 || true
        rm -f /dev/shm/vmio-gsched
    fi
    [ -z "$VM_LOAD_CG" ] || rmdir "$VM_LOAD_CG" 2>/dev/null || true
    bench_cleanup
}
trap cleanup_all EXIT

HOG_PIDS=()
start_hogs() { # [CGROUP]
    local _
    for _ in $(seq 1 "$HOGS"); do
        if [ -n "${1:-}" ]; then
            (cg_join "$1" "$BASHPID"; exec "$JOB" --hog) &
        else
            "$JOB" --hog &
        fi
        HOG_PIDS+=($!)
    done
    sleep 0.3
}
stop_hogs() {
    local p
    for p in "${HOG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${HOG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    HOG_PIDS=()
}
# run_job [CGROUP]: one run of the job (in CGROUP), prints its seconds.
run_job() {
    local out
    if [ -n "${1:-}" ]; then
        out=$(cg_join "$1" "$BASHPID"
            exec "$JOB" --procs "$PROCS" --rounds "$ROUNDS" --work "$WORK")
    else
        out=$("$JOB" --procs "$PROCS" --rounds "$ROUNDS" --work "$WORK")
    fi
    echo "$out" | sed -n 's/.*seconds=//p'
}

# setting NAME: RUNS runs, prints the times, sets RESULT[NAME] = median
declare -A RESULT TIMES
setting() {
    local name=$1 t times=()
    case $name in
    alone) ;;
    alone-gcpus) cg_make job "$GROUP_CPUS" "" ;;
    free) start_hogs ;;
    weight)
        cg_make job "" "$WEIGHT_V2"; cg_make load "" ""
        start_hogs load ;;
    dedicated)
        cg_make load "$HOUSEKEEPING" ""; cg_make job "$GROUP_CPUS" "$WEIGHT_V2"
        if [ $CG_VER = 2 ]; then
            if echo root >"$CG/$CG_NAME-job/cpuset.cpus.partition" 2>/dev/null &&
                grep -q '^root$' "$CG/$CG_NAME-job/cpuset.cpus.partition"; then
                PARTITION=root
            else
                PARTITION="refused ($(cat "$CG/$CG_NAME-job/cpuset.cpus.partition" 2>/dev/null))"
            fi
        fi
        start_hogs load ;;
    esac
    for _ in $(seq 1 "$RUNS"); do
        case $name in
        alone-gcpus | weight | dedicated) t=$(run_job job) ;;
        *) t=$(run_job) ;;
        esac
        [ -n "$t" ] || die "the job failed ($name)"
        times+=("$t")
    done
    stop_hogs
    cg_remove
    TIMES[$name]="${times[*]}"
    RESULT[$name]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END {
        print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    say "$(printf '%-12s median %6.3f s   runs: %s' "$name" "${RESULT[$name]}" "${TIMES[$name]}")"
}

# ---- --vm: the job across two TCG domains grouped by vmio-group ----------
# Two 1-vCPU QEMU domains of a private libvirtd (scripts/libvirt-local.sh),
# one rank of the job in each, talking through the group's shared memory
# (vmio-group --shmem: an ivshmem device on /dev/shm/vmio-<group>). The
# load (the hogs) sits in a cgroup next to the domains' own, as other VMs
# would. Settings: vm-alone (no load), vm-free (no pinning, default
# weights), vm-weight (vmio-group --weight), vm-strict (--pin strict on
# top: vCPU i -> CPU i).
vm_bench() {
    command -v virsh >/dev/null || die "--vm needs virsh (libvirt-clients)"
    ninja -C "$B" cli/vmio-group >/dev/null || die "build failed (ninja -C $B cli/vmio-group)"
    local vg=$B/cli/vmio-group lv=$TMP/libvirt uri kernel bbdeb d k
    uri=$("$BENCH_ROOT/scripts/libvirt-local.sh" start --dir "$lv") ||
        die "the private libvirtd did not start (scripts/libvirt-local.sh)"
    VM_LV=$lv
    kernel=${VMIO_VM_KERNEL:-}
    [ -n "$kernel" ] || [ ! -s "$B/vm/kernel/vmlinux" ] || kernel=$B/vm/kernel/vmlinux
    [ -n "$kernel" ] || kernel=$(ls -t "$B"/group-qemu/vmlinuz-* 2>/dev/null | head -1 || true)
    [ -n "$kernel" ] || die "no guest kernel in $B: run the group-qemu test once (it fetches Debian's) or tests/vm/build.sh"
    bbdeb=$(ls -t "$B"/vm/debs/busybox-static_*.deb "$B"/group-qemu/busybox-static_*.deb 2>/dev/null | head -1 || true)
    [ -n "$bbdeb" ] || die "no busybox-static package in $B: run the group-qemu test once"
    mkdir -p "$TMP/initrd/bin" "$TMP/initrd/proc" "$TMP/initrd/sys"
    dpkg-deb --fsys-tarfile "$bbdeb" | tar -xO ./bin/busybox >"$TMP/initrd/bin/busybox"
    chmod +x "$TMP/initrd/bin/busybox"
    ${CC:-cc} -std=c11 -O2 -static -o "$TMP/initrd/bin/group-job" "$BENCH_ROOT/bench/group-job.c" ||
        die "cannot build a static group-job for the guests"
    cat >"$TMP/initrd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
rank=$(sed -n 's/.*vmio.rank=\([0-9]*\).*/\1/p' /proc/cmdline)
dev=
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && dev=$d
done
if [ -n "$dev" ]; then
    echo 1 >"$dev/enable"
    /bin/group-job --shm "$dev/resource2" --rank "$rank" --ranks 2
else
    echo "@@no-ivshmem"
fi
while :; do sleep 3600; done
INIT
    chmod +x "$TMP/initrd/init"
    (cd "$TMP/initrd" && find . | ./bin/busybox cpio -o -H newc 2>/dev/null) | gzip -1 >"$TMP/initrd.gz"
    rm -f /dev/shm/vmio-gsched
    for k in 0 1; do
        d=vmio-gsched$k
        cat >"$TMP/$d.xml" <<XML
<domain type='qemu'>
  <name>$d</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$kernel</kernel><initrd>$TMP/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 no_timer_check cryptomgr.notests vmio.rank=$k</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <serial type='file'><source path='$TMP/$d.console'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
        virsh -q -c "$uri" define "$TMP/$d.xml" >/dev/null || die "virsh define $d"
    done
    export VMIO_GROUP_STATE_DIR=$TMP/groups
    vgc() { "$vg" --connect "$uri" "$@" >>"$TMP/vmio-group.out" 2>&1 ||
        { cat "$TMP/vmio-group.out" >&2; die "vmio-group $*"; }; }
    vgc create gsched
    vgc add gsched vmio-gsched0 vmio-gsched1
    vgc apply gsched --pin none --shmem 4M
    for k in 0 1; do virsh -q -c "$uri" start vmio-gsched$k >/dev/null || die "virsh start"; done
    for k in 0 1; do
        wait_for_grep 240 "rank $k of 2 ready" "$TMP/vmio-gsched$k.console" ||
            { tail -5 "$TMP/vmio-gsched$k.console" >&2; die "guest $k did not start its rank"; }
    done
    # The load next to the domains' cgroups (cpu controller).
    local rel parent
    rel=$(grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' "/proc/$(cat "$lv/run/qemu/vmio-gsched0.pid")/cgroup" |
        head -1 | cut -d: -f3)
    if [ -n "$rel" ]; then
        parent=$CG/cpu$(dirname "$(dirname "$rel")")
    else
        rel=$(grep '^0::' "/proc/$(cat "$lv/run/qemu/vmio-gsched0.pid")/cgroup" | cut -d: -f3)
        parent=$CG$(dirname "$(dirname "$rel")")
    fi
    VM_LOAD_CG=$parent/vmio-bench-load-$$
    mkdir -p "$VM_LOAD_CG"
    say "guests up; load cgroup $VM_LOAD_CG; job: 2 ranks (one per domain) x $VM_ROUNDS rounds, $VM_WORK steps"
    local s t
    declare -A VRES VTIMES
    for s in vm-alone vm-free vm-weight vm-strict; do
        case $s in
        vm-weight) vgc apply gsched --weight 200000 ;;
        vm-strict) vgc apply gsched --pin strict ;;
        esac
        if [ "$s" != vm-alone ]; then
            for _ in $(seq 1 "$HOGS"); do
                (echo "$BASHPID" >"$VM_LOAD_CG/cgroup.procs"; exec "$JOB" --hog) &
                HOG_PIDS+=($!)
            done
            sleep 0.3
        fi
        VTIMES[$s]=$(python3 - /dev/shm/vmio-gsched "$VM_ROUNDS" "$VM_WORK" "$RUNS" <<'PY'
import mmap, os, struct, sys, time
path, rounds, work, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 4096)
def put(i, v): m[i * 8:i * 8 + 8] = struct.pack("<Q", v)
def get(i): return struct.unpack("<Q", m[i * 8:i * 8 + 8])[0]
out = []
for _ in range(runs):
    run = get(0) + 1
    put(1, rounds); put(2, work)
    t0 = time.monotonic()
    put(0, run)
    while not all(get(8 * (k + 1) + 1) == run for k in range(2)):
        if time.monotonic() - t0 > 120:
            sys.exit("a run took more than 120 s")
        time.sleep(0.0005)
    out.append(f"{time.monotonic() - t0:.3f}")
print(" ".join(out))
PY
) || die "the job across the VMs failed ($s)"
        stop_hogs
        VRES[$s]=$(printf '%s\n' ${VTIMES[$s]} | sort -n | awk '{ a[NR] = $1 } END {
            print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
        say "$(printf '%-12s median %6.3f s   runs: %s' "$s" "${VRES[$s]}" "${VTIMES[$s]}")"
        virsh -q -c "$uri" vcpupin vmio-gsched0 | sed 's/^/    vmio-gsched0 vcpupin /' >&2
        virsh -q -c "$uri" schedinfo vmio-gsched0 | grep cpu_shares | sed 's/^/    vmio-gsched0 /' >&2
    done
    local out
    out=$(out_file group-sched-vm)
    python3 - "$out" <<PY
import json, sys
res = {"vm-alone": ${VRES[vm-alone]}, "vm-free": ${VRES[vm-free]},
       "vm-weight": ${VRES[vm-weight]}, "vm-strict": ${VRES[vm-strict]}}
runs = {"vm-alone": "${VTIMES[vm-alone]}", "vm-free": "${VTIMES[vm-free]}",
        "vm-weight": "${VTIMES[vm-weight]}",
        "vm-strict": "${VTIMES[vm-strict]}"}
doc = {"machine": json.loads('''$(machine_json)'''), "loadavg_before": "$LOAD_BEFORE",
       "job": {"ranks": 2, "rounds": $VM_ROUNDS, "work": $VM_WORK}, "hogs": $HOGS,
       "median_s": res, "runs_s": {k: [float(x) for x in v.split()] for k, v in runs.items()},
       "ratio_to_free": {k: round(v / res["vm-free"], 3) for k, v in res.items()}}
json.dump(doc, open(sys.argv[1], "w"), indent=1)
print(f"{'setting':<12} {'median s':>9} {'/ free':>7}")
for k in res:
    print(f"{k:<12} {res[k]:9.3f} {res[k] / res['vm-free']:7.2f}")
print(f"load average before: $LOAD_BEFORE")
print(f"raw: {sys.argv[1]}")
PY
}
wait_for_grep() { # SECONDS PATTERN FILE
    local i=0
    until grep -q "$2" "$3" 2>/dev/null; do
        [ "$i" -lt $(( $1 * 10 )) ] || return 1
        sleep 0.1
        i=$((i + 1))
    done
}
if [ "$VM" = 1 ]; then
    vm_bench
    exit 0
fi

say "job: $PROCS processes x $ROUNDS rounds, $WORK steps per round; load: $HOGS CPU hogs;" \
    "$NCPU CPUs, cgroup v$CG_VER; group CPUs $GROUP_CPUS, housekeeping $HOUSEKEEPING"
SETTINGS="alone alone-gcpus free weight dedicated"
for s in $SETTINGS; do setting "$s"; done
[ $CG_VER = 1 ] && PARTITION="n/a (cgroup v1: plain cpuset)"

# ---- pingpong: same CPU vs two CPUs -------------------------------------
PP_JSON="[]"
if [ "$PINGPONG" = 1 ]; then
    pingpong() { # SERVER-CPU CLIENT-CPU -> JSON lines
        rm -f "$TMP/pp.port"
        taskset -c "$1" "$VMIO_BENCH" pingpong --server --once --listen 127.0.0.1:0 \
            --port-file "$TMP/pp.port" >/dev/null 2>"$TMP/pp-server.log" &
        local spid=$!
        wait_for_file 10 "$TMP/pp.port" || die "pingpong server did not start"
        taskset -c "$2" "$VMIO_BENCH" pingpong --connect "127.0.0.1:$(cat "$TMP/pp.port")" \
            --sizes 1..65536 --iters 3000 --json
        wait "$spid" || true
    }
    pingpong 0 0 >"$TMP/pp-same.json"
    pingpong 0 1 >"$TMP/pp-cross.json"
    PP_JSON=$(python3 - "$TMP/pp-same.json" "$TMP/pp-cross.json" <<'PY'
import json, sys
def load(p):
    return {r["size"]: r for r in map(json.loads, open(p))}
same, cross = load(sys.argv[1]), load(sys.argv[2])
rows = []
for size in sorted(same):
    s, c = same[size]["lat_us"]["median"], cross[size]["lat_us"]["median"]
    rows.append({"size": size, "same_cpu_us": s, "two_cpus_us": c,
                 "same_mb_s": same[size]["mb_per_s"], "two_mb_s": cross[size]["mb_per_s"]})
print(json.dumps(rows))
PY
)
fi

# ---- results -------------------------------------------------------------
OUT=$(out_file group-sched)
python3 - "$OUT" <<PY
import json, sys
res = {"alone": ${RESULT[alone]}, "alone-gcpus": ${RESULT[alone-gcpus]}, "free": ${RESULT[free]},
       "weight": ${RESULT[weight]}, "dedicated": ${RESULT[dedicated]}}
times = {"alone": "${TIMES[alone]}", "alone-gcpus": "${TIMES[alone-gcpus]}",
         "free": "${TIMES[free]}", "weight": "${TIMES[weight]}",
         "dedicated": "${TIMES[dedicated]}"}
pp = json.loads('''$PP_JSON''')
doc = {"machine": json.loads('''$(machine_json)'''), "loadavg_before": "$LOAD_BEFORE",
       "job": {"procs": $PROCS, "rounds": $ROUNDS, "work": $WORK}, "hogs": $HOGS,
       "cgroup": "v$CG_VER", "group_cpus": "$GROUP_CPUS", "housekeeping": "$HOUSEKEEPING",
       "partition": "$PARTITION", "median_s": res,
       "runs_s": {k: [float(x) for x in v.split()] for k, v in times.items()},
       "ratio_to_free": {k: round(v / res["free"], 3) for k, v in res.items()},
       "pingpong": pp}
json.dump(doc, open(sys.argv[1], "w"), indent=1)
print(f"{'setting':<12} {'median s':>9} {'/ free':>7}")
for k in res:
    print(f"{k:<12} {res[k]:9.3f} {res[k] / res['free']:7.2f}")
print(f"cgroup v$CG_VER, partition: $PARTITION; load average before: $LOAD_BEFORE")
if pp:
    print("pingpong TCP loopback, median one-way latency (us): size same-CPU two-CPUs ratio")
    for r in pp:
        if r["size"] in (1, 64, 1024, 4096, 65536):
            print(f"  {r['size']:>6} {r['same_cpu_us']:9.1f} {r['two_cpus_us']:9.1f}"
                  f" {r['two_cpus_us'] / r['same_cpu_us']:6.2f}")
print(f"raw: {sys.argv[1]}")
PY
