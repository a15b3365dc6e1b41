#!/bin/bash
# vmio-group on real QEMU domains through a real libvirt daemon: the private
# libvirtd of scripts/libvirt-local.sh (QEMU driver, TCG, no KVM needed)
# runs three 1-vCPU domains booting Debian's kernel with a tiny busybox
# initramfs (1 vCPU each: strict 1:1 pinning of the two members must fit
# on a 2-CPU host). vmio-group groups two of them and applies strict
# pinning + a group weight, then loose pinning on dedicated CPUs with a
# housekeeping CPU and group shared memory; the test checks the effect
# where it matters: the CPU affinity of the QEMU threads themselves (the
# vCPU threads "CPU n/TCG" named by QEMU, matched with the thread ids of
# `info cpus`), the emulator threads, the third domain kept off the
# group's CPUs, libvirt's own view (virsh vcpupin, emulatorpin, schedinfo),
# the domains' cgroups (cpu.shares/cpu.weight, the vCPUs' cpusets) and one
# ivshmem object mapped by both member QEMUs. Also: a dry run and a
# refused apply (strict pinning that cannot fit) change nothing, a second
# apply reports no change, destroy puts pins, weights and metadata back.
#
# The guest kernel: $VMIO_VM_KERNEL, else the vmlinux of tests/vm/build.sh
# in the build dir (<build>/vm/kernel/vmlinux), else Debian's
# linux-image-amd64 fetched with apt-get download into <build>/group-qemu
# (kept for the next run). Without any, the domains run QEMU's firmware
# only (no bootable disk: still real vCPU threads), and the test says so.
#
# Skipped (77) only when the libvirt daemon cannot run here (not root,
# libvirt's QEMU driver or QEMU not installed) or vmio-group's libvirt
# backend is not built.
. "$(dirname "$0")/functions.sh"

SRC_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ -n "${VMIO_GROUP:-}" ] && [ -x "${VMIO_GROUP:-}" ] ||
    skip "vmio-group or its libvirt backend is not built (needs libvirt-dev and libxml2-dev)"
BUILD_ROOT=$(cd "$(dirname "$VMIO_GROUP")/.." && pwd)
require_cmd taskset python3 gzip

# ---- the daemon ---------------------------------------------------------
LV_DIR=$TMP/libvirt
on_exit "'$SRC_ROOT/scripts/libvirt-local.sh' stop --dir '$LV_DIR' >/dev/null 2>&1"
rc=0
URI=$("$SRC_ROOT/scripts/libvirt-local.sh" start --dir "$LV_DIR" 2>"$TMP/libvirt-local.log") || rc=$?
if [ "$rc" -eq 77 ]; then
    skip "libvirt's daemon cannot run here: $(sed -n 's/.*cannot run here: //p' "$TMP/libvirt-local.log")"
fi
[ "$rc" -eq 0 ] || { cat "$TMP/libvirt-local.log" >&2; fail "scripts/libvirt-local.sh start failed ($rc)"; }
ok "libvirtd up: $URI"
vsh() { virsh -q -c "$URI" "$@"; }
NCPU=$(nproc)
ALL_CPUS=$(seq -s ' ' 0 $((NCPU - 1)))

# ---- the guest: kernel + busybox initramfs ------------------------------
CACHE=$BUILD_ROOT/group-qemu
mkdir -p "$CACHE"
fetch_deb() { # PACKAGE -> path of its .deb in the cache (apt-get download)
    local deb
    deb=$(ls -t "$CACHE/$1"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        (cd "$CACHE" && apt-get download "$1") >"$TMP/apt-download.out" 2>&1 || return 1
        deb=$(ls -t "$CACHE/$1"_*.deb 2>/dev/null | head -1 || true)
    fi
    [ -n "$deb" ] && echo "$deb"
}
KERNEL=${VMIO_VM_KERNEL:-}
if [ -z "$KERNEL" ] && [ -s "$BUILD_ROOT/vm/kernel/vmlinux" ]; then
    KERNEL=$BUILD_ROOT/vm/kernel/vmlinux
fi
if [ -z "$KERNEL" ]; then
    KERNEL=$(ls -t "$CACHE"/vmlinuz-* 2>/dev/null | head -1 || true)
fi
if [ -z "$KERNEL" ] && command -v apt-get >/dev/null; then
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [ -n "$kpkg" ] && kdeb=$(fetch_deb "$kpkg"); then
        dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$CACHE" --wildcards --strip-components=2 \
            './boot/vmlinuz-*' && KERNEL=$(ls -t "$CACHE"/vmlinuz-* 2>/dev/null | head -1 || true)
        rm -f "$kdeb" # only vmlinuz is kept
    fi
fi
BUSYBOX=
bbdeb=$(ls -t "$BUILD_ROOT"/vm/debs/busybox-static_*.deb 2>/dev/null | head -1 || true)
[ -n "$bbdeb" ] || bbdeb=$(fetch_deb busybox-static) || bbdeb=
if [ -n "$bbdeb" ]; then
    mkdir -p "$TMP/initrd/bin" "$TMP/initrd/proc"
    dpkg-deb --fsys-tarfile "$bbdeb" | tar -xO ./bin/busybox >"$TMP/initrd/bin/busybox" &&
        chmod +x "$TMP/initrd/bin/busybox" && BUSYBOX=$TMP/initrd/bin/busybox
fi
OS_XML=
if [ -n "$KERNEL" ] && [ -n "$BUSYBOX" ]; then
    cat >"$TMP/initrd/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "@@guest-up cpus=$(nproc)"
while :; do sleep 3600; done
EOF
    chmod +x "$TMP/initrd/init"
    (cd "$TMP/initrd" && find . | ./bin/busybox cpio -o -H newc 2>/dev/null) | gzip -1 >"$TMP/initrd.gz"
    OS_XML="<kernel>$KERNEL</kernel><initrd>$TMP/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 no_timer_check cryptomgr.notests</cmdline>"
    ok "guest: $KERNEL + busybox initramfs"
else
    echo "note: no guest kernel or busybox could be found or fetched: the domains run QEMU's firmware only"
fi

# ---- two domains --------------------------------------------------------
# Two members and one domain outside the group (kept off dedicated CPUs).
# One vCPU each: strict 1:1 pinning of both members must fit on 2 CPUs.
DOMS="vmio-gq1 vmio-gq2"
OTHER=vmio-gq-other
for d in $DOMS $OTHER; do
    cat >"$TMP/$d.xml" <<EOF
<domain type='qemu'>
  <name>$d</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>$OS_XML</os>
  <features><acpi/><apic/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <serial type='file'><source path='$TMP/$d-console.log'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    vsh define "$TMP/$d.xml" >/dev/null || fail "virsh define $d"
    vsh start "$d" >/dev/null || fail "virsh start $d"
done
ok "domains started: $DOMS $OTHER (the guests boot while the test pins them)"

# ---- what the QEMU threads really have ---------------------------------
qemu_pid() { cat "$LV_DIR/run/qemu/$1.pid"; }
# vcpu_tids DOM: the thread ids of vCPU 0, 1, ... from QEMU's monitor,
# checked against the thread names QEMU gives them.
vcpu_tids() {
    local pid tids t i=0
    pid=$(qemu_pid "$1")
    tids=$(vsh qemu-monitor-command --hmp "$1" 'info cpus' | sed -n 's/.*thread_id=\([0-9]*\).*/\1/p')
    for t in $tids; do
        grep -q "^CPU $i/" "/proc/$pid/task/$t/comm" ||
            fail "$1: thread $t of vCPU $i is named '$(cat "/proc/$pid/task/$t/comm")'"
        echo "$t"
        i=$((i + 1))
    done
}
# affinity TID: the thread's CPU affinity as a list of CPU numbers "0 1".
affinity() { cpulist_expand "$(taskset -pc "$1" | sed 's/.*: //')"; }
# emulator_tids DOM: the QEMU threads that are not vCPUs.
emulator_tids() {
    local pid t
    pid=$(qemu_pid "$1")
    for t in /proc/"$pid"/task/*; do
        grep -q '^CPU [0-9]*/' "$t/comm" || basename "$t"
    done
}
# cpulist_expand "0-2,5" -> "0 1 2 5"
cpulist_expand() {
    python3 -c 'import sys
out = []
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    out += range(int(a), int(b or a) + 1)
print(" ".join(map(str, out)))' "$1"
}
snapshot() { # FILE: every thread affinity and libvirt's view of the domains
    local d t
    for d in $DOMS $OTHER; do
        tids=$(vcpu_tids "$d")
        for t in $tids; do echo "$d vcpu-thread $t $(affinity "$t")"; done
        # QEMU starts and ends worker threads: their affinities, not their ids.
        for t in $(emulator_tids "$d"); do affinity "$t" 2>/dev/null || true; done |
            sort -u | sed "s/^/$d emulator-threads /"
        vsh vcpupin "$d" | sed "s/^/$d vcpupin /"
        vsh emulatorpin "$d" | sed "s/^/$d emulatorpin /"
        vsh schedinfo "$d" | grep cpu_shares | sed "s/^/$d /"
    done >"$1"
}
snapshot "$TMP/before"
for d in $DOMS $OTHER; do
    tids=$(vcpu_tids "$d")
    for t in $tids; do
        [ "$(affinity "$t")" = "$ALL_CPUS" ] || fail "$d: vCPU thread $t starts pinned to $(affinity "$t")"
    done
done
declare -A SHARES0
for d in $DOMS; do SHARES0[$d]=$(vsh schedinfo "$d" | awk '$1 == "cpu_shares" { print $3 }'); done
ok "before: every vCPU thread may run on CPUs $ALL_CPUS; cpu_shares ${SHARES0[*]}"

# ---- vmio-group ------------------------------------------------------------
export VMIO_GROUP_STATE_DIR=$TMP/state
# A sanitized build: ASan intercepts the XDR calls of libtirpc, which
# libvirt's remote driver uses, but resolves the real ones only for
# libraries loaded at start-up; libvirt (and libtirpc with it) is dlopen'ed
# later, so load libtirpc at start-up, after the sanitizer's runtime.
VG_PRELOAD=
asan_rt=$(ldd "$VMIO_GROUP" | awk '/libasan\.so/ { print $3 }')
if [ -n "$asan_rt" ]; then
    # (awk reads to the end: an early exit would kill ldconfig with SIGPIPE,
    # which pipefail turns into the script's exit status.)
    tirpc=$(ldconfig -p | awk '/libtirpc\.so\.3 / && !found { print $NF; found = 1 }')
    [ -n "$tirpc" ] && VG_PRELOAD="$asan_rt $tirpc"
    # LeakSanitizer's exit-time scan crashes on the threads libvirt's remote
    # driver leaves running; leaks are checked on the test driver instead
    # (unit tests, ASan and valgrind).
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    export ASAN_OPTIONS
fi
vg() { LD_PRELOAD=$VG_PRELOAD "$VMIO_GROUP" --connect "$URI" "$@"; }
# apply_json FILE ARGS...: vmio-group --json apply, its output in FILE.
apply_json() {
    local f=$1
    shift
    vg --json apply gq "$@" >"$f" 2>"$f.err" ||
        { cat "$f" "$f.err" >&2; fail "vmio-group apply gq $* failed"; }
}
# nchanges FILE [VM WHAT]: the number of changes (of VM and WHAT).
nchanges() {
    python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
ch = doc["changes"]
if len(sys.argv) > 2:
    ch = [c for c in ch if c["vm"] == sys.argv[2] and c["what"] == sys.argv[3]]
print(len(ch))
PY
}
# change_after FILE VM WHAT: the "after" of that change ("" if none).
change_after() {
    python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
print(next((c["after"] for c in doc["changes"]
            if c["vm"] == sys.argv[2] and c["what"] == sys.argv[3]), ""))
PY
}
# cgroup_cpu_file DOM FILE: a file of the domain's cgroup in the cpu
# controller (v1 cpu hierarchy, or the unified v2 one).
cgroup_cpu_dir() {
    local pid rel
    pid=$(qemu_pid "$1")
    if rel=$(grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' "/proc/$pid/cgroup" | head -1 | cut -d: -f3) &&
        [ -n "$rel" ]; then
        echo "/sys/fs/cgroup/cpu$(dirname "$rel")"
    else
        rel=$(grep '^0::' "/proc/$pid/cgroup" | cut -d: -f3)
        echo "/sys/fs/cgroup$(dirname "$rel")"
    fi
}
# thread_cpuset_file PID TID: cpuset.cpus of the thread's own cgroup
# (libvirt gives every vCPU one: .../vcpu0), "" if it has none.
thread_cpuset_file() {
    local rel f
    rel=$(grep -E '^[0-9]+:([^:]*,)?cpuset(,[^:]*)?:' "/proc/$1/task/$2/cgroup" | head -1 | cut -d: -f3)
    if [ -n "$rel" ]; then
        f=/sys/fs/cgroup/cpuset$rel/cpuset.cpus
    else
        rel=$(grep '^0::' "/proc/$1/task/$2/cgroup" | cut -d: -f3)
        f=/sys/fs/cgroup$rel/cpuset.cpus
    fi
    [ -f "$f" ] && echo "$f" || true
}
shares_of() { vsh schedinfo "$1" | awk '$1 == "cpu_shares" { print $3 }'; }
virsh_vcpupin() { vsh vcpupin "$1" --vcpu "$2" | awk 'NF { print $NF }'; }
virsh_emulatorpin() { vsh emulatorpin "$1" | awk 'NF { print $NF }'; }

vg create gq >/dev/null || fail "vmio-group create gq"
vg add gq $DOMS >/dev/null || fail "vmio-group add gq $DOMS"
vg --json show gq | python3 -c 'import json, sys
d = json.load(sys.stdin)
assert sorted(d["groups"][0]["members"]) == sorted(sys.argv[1:]), d' $DOMS || fail "vmio-group show gq: wrong members"
ok "group gq created with members $DOMS"

# 1. strict pinning + weight, dry run first: reports, changes nothing.
WEIGHT=3000
apply_json "$TMP/dry.json" --pin strict --weight $WEIGHT --dry-run
[ "$(nchanges "$TMP/dry.json")" -gt 0 ] || fail "dry run reports no change"
snapshot "$TMP/after-dry"
diff "$TMP/before" "$TMP/after-dry" >&2 || fail "the dry run changed the domains"
ok "dry run: $(nchanges "$TMP/dry.json") changes reported, nothing changed on the QEMU threads"

apply_json "$TMP/strict.json" --pin strict --weight $WEIGHT
used=
for d in $DOMS; do
    want=$(change_after "$TMP/strict.json" "$d" "vcpupin 0")
    [ -n "$want" ] || fail "$d: apply reported no vcpupin 0 change"
    t=$(vcpu_tids "$d")
    got=$(affinity "$t")
    [ "$got" = "$(cpulist_expand "$want")" ] ||
        fail "$d: vCPU 0 thread $t runs on CPUs '$got', apply said $want"
    [ "$(echo "$got" | wc -w)" -eq 1 ] || fail "$d: strict pinning left vCPU 0 on CPUs $got"
    case " $used " in *" $got "*) fail "$d: vCPU 0 shares CPU $got with another member" ;; esac
    used="$used $got"
    [ "$(cpulist_expand "$(virsh_vcpupin "$d" 0)")" = "$got" ] ||
        fail "$d: virsh vcpupin says $(virsh_vcpupin "$d" 0), the thread has $got"
    cs=$(thread_cpuset_file "$(qemu_pid "$d")" "$t")
    if [ -n "$cs" ]; then
        [ "$(cpulist_expand "$(cat "$cs")")" = "$got" ] ||
            fail "$d: the vCPU's cgroup $cs has CPUs $(cat "$cs"), the thread $got"
    else
        echo "note: $d: vCPU thread $t has no cgroup cpuset of its own"
    fi
    share=$((WEIGHT / 2))
    [ "$(shares_of "$d")" = "$share" ] || fail "$d: cpu_shares $(shares_of "$d"), expected $share"
    cg=$(cgroup_cpu_dir "$d")
    if [ -f "$cg/cpu.shares" ]; then
        [ "$(cat "$cg/cpu.shares")" = "$share" ] ||
            fail "$d: $cg/cpu.shares is $(cat "$cg/cpu.shares"), expected $share"
    elif [ -f "$cg/cpu.weight" ]; then
        # libvirt writes cpu_shares to cgroup v2's cpu.weight as it is
        [ "$(cat "$cg/cpu.weight")" = "$share" ] ||
            fail "$d: $cg/cpu.weight is $(cat "$cg/cpu.weight"), expected $share"
    else
        fail "$d: no cpu.shares or cpu.weight in its cgroup $cg"
    fi
    vsh dumpxml "$d" | grep -q "<vmio:group .*name=.gq" ||
        fail "$d: no group metadata in its libvirt definition after apply"
    ok "$d: vCPU 0 = thread $t pinned to CPU $got (taskset, virsh and ${cs:-no} cpuset agree), cpu_shares $share in $cg, group metadata"
done

apply_json "$TMP/again.json"
[ "$(nchanges "$TMP/again.json")" -eq 0 ] ||
    { cat "$TMP/again.json" >&2; fail "a second apply reports changes"; }
ok "second apply: nothing to change"

# 2. strict pinning with a housekeeping CPU cannot fit 2 vCPUs on 1 CPU:
# refused, nothing changed.
snapshot "$TMP/strict-state"
if vg apply gq --pin strict --housekeeping 0 >"$TMP/hk-strict.out" 2>&1; then
    fail "strict pinning of 2 vCPUs with CPU 0 kept free was accepted on $NCPU CPUs"
fi
if [ "$NCPU" -eq 2 ]; then
    grep -q 'strict pinning needs' "$TMP/hk-strict.out" ||
        { cat "$TMP/hk-strict.out" >&2; fail "unexpected error for strict + housekeeping"; }
fi
snapshot "$TMP/after-refused"
diff "$TMP/strict-state" "$TMP/after-refused" >&2 || fail "a refused apply changed the domains"
ok "strict + housekeeping on $NCPU CPUs refused: $(head -1 "$TMP/hk-strict.out")"

# 3. loose pinning on dedicated CPUs, CPU 0 kept for housekeeping, and
# group shared memory: the members' vCPUs on the group's CPUs, their
# emulator threads on CPU 0, the other domain's vCPU off the group's CPUs,
# one ivshmem object mapped by both QEMUs.
on_exit "rm -f /dev/shm/vmio-gq"
apply_json "$TMP/loose.json" --pin loose --housekeeping 0 --dedicated --shmem 4M
# "cpus" is the placement as text: "group 1; vmio-gq1 1; ..."
GCPUS=$(python3 -c 'import json, sys
cpus = json.load(open(sys.argv[1]))["cpus"] or ""
print(next((p.split()[1] for p in cpus.split(";") if p.split()[:1] == ["group"]), ""))' \
    "$TMP/loose.json")
[ -n "$GCPUS" ] || { cat "$TMP/loose.json" >&2; fail "apply reported no group CPUs"; }
GSET=$(cpulist_expand "$GCPUS")
case " $GSET " in *" 0 "*) fail "the group's CPUs $GCPUS include housekeeping CPU 0" ;; esac
for d in $DOMS; do
    t=$(vcpu_tids "$d")
    [ "$(affinity "$t")" = "$GSET" ] ||
        fail "$d: vCPU thread $t on CPUs '$(affinity "$t")', the group's are $GCPUS"
    for e in $(emulator_tids "$d"); do
        a=$(affinity "$e" 2>/dev/null) || continue # a worker that just ended
        [ "$a" = "0" ] || fail "$d: emulator thread $e ($(cat "/proc/$(qemu_pid "$d")/task/$e/comm")) on CPUs $a, not housekeeping CPU 0"
    done
    [ "$(virsh_emulatorpin "$d")" = "0" ] || fail "$d: virsh emulatorpin says $(virsh_emulatorpin "$d")"
done
ok "loose on dedicated CPUs $GCPUS: vCPU threads there, emulator threads on CPU 0"
t=$(vcpu_tids $OTHER)
for c in $(affinity "$t"); do
    case " $GSET " in *" $c "*) fail "$OTHER (not in the group) may still run on group CPU $c" ;; esac
done
ok "$OTHER (outside the group): vCPU thread $t kept on CPUs $(affinity "$t"), off the group's"
SHM=$(vsh dumpxml vmio-gq1 | sed -n "s/.*<shmem name='\([^']*\)'.*/\1/p" | head -1)
[ -n "$SHM" ] || fail "vmio-gq1: no <shmem> in its live definition after apply --shmem"
inodes=
for d in $DOMS; do
    vsh qemu-monitor-command --hmp "$d" 'info pci' | grep -q '1af4:1110' ||
        fail "$d: QEMU has no ivshmem device (1af4:1110) after apply --shmem"
    ino=$(awk -v f="/dev/shm/$SHM" '$6 == f { print $5; exit }' "/proc/$(qemu_pid "$d")/maps")
    [ -n "$ino" ] || fail "$d: QEMU does not map /dev/shm/$SHM"
    inodes="$inodes $ino"
done
[ "$(echo $inodes | tr ' ' '\n' | sort -u | wc -l)" -eq 1 ] ||
    fail "the members map different objects named /dev/shm/$SHM (inodes$inodes)"
ok "shared memory: both QEMUs have an ivshmem device and map the same /dev/shm/$SHM (4 MiB)"
apply_json "$TMP/again2.json"
[ "$(nchanges "$TMP/again2.json")" -eq 0 ] ||
    { cat "$TMP/again2.json" >&2; fail "a second apply (loose) reports changes"; }
ok "second apply: nothing to change"

# 4. destroy: the members as they were before the group.
vg destroy gq >"$TMP/destroy.out" 2>&1 || { cat "$TMP/destroy.out" >&2; fail "vmio-group destroy gq"; }
for d in $DOMS; do
    t=$(vcpu_tids "$d")
    [ "$(affinity "$t")" = "$ALL_CPUS" ] ||
        fail "$d: after destroy vCPU thread $t still on CPUs $(affinity "$t")"
    for e in $(emulator_tids "$d"); do
        a=$(affinity "$e" 2>/dev/null) || continue
        [ "$a" = "$ALL_CPUS" ] || fail "$d: after destroy emulator thread $e still on CPUs $a"
    done
    [ "$(shares_of "$d")" = "${SHARES0[$d]}" ] ||
        fail "$d: after destroy cpu_shares is $(shares_of "$d"), was ${SHARES0[$d]} before the group"
    if vsh dumpxml "$d" | grep -q "libvmio.org/xmlns/group"; then
        fail "$d: group metadata left after destroy"
    fi
done
vg list 2>/dev/null | grep -qx gq && fail "group gq still listed after destroy"
for d in $DOMS; do
    if vsh dumpxml --inactive "$d" | grep -q "<shmem name='$SHM'"; then
        fail "$d: the group's shared memory is still in its persistent definition after destroy"
    fi
    # Hot-unplug completes when the guest ejects the device (ACPI).
    gone=
    for _ in $(seq 60); do
        vsh dumpxml "$d" | grep -q "<shmem name='$SHM'" || { gone=1; break; }
        sleep 0.5
    done
    [ -n "$gone" ] || fail "$d: the running QEMU still has the group's ivshmem device 30 s after destroy"
done
ok "destroy: members' vCPU and emulator threads back on CPUs $ALL_CPUS, cpu_shares as before, no metadata, the ivshmem device unplugged from the running QEMUs"
echo "note: $OTHER after destroy: vCPU thread on CPUs $(affinity "$(vcpu_tids $OTHER)")"

# 5. The guests kept running through all of it.
if [ -n "$OS_XML" ]; then
    for d in $DOMS $OTHER; do
        wait_until 240 grep -q '@@guest-up' "$TMP/$d-console.log" ||
            { tail -n 20 "$TMP/$d-console.log" >&2; fail "$d did not boot"; }
    done
    ok "all three guests booted to their busybox init"
fi
for d in $DOMS $OTHER; do
    [ "$(vsh domstate "$d")" = running ] || fail "$d is $(vsh domstate "$d")"
done
ok "group-qemu passed"
