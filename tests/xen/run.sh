#!/bin/bash
# tests/xen/run.sh: run the dom0 test scripts on Xen under QEMU TCG.
#
#   tests/xen/run.sh [--build-dir DIR] [--mem MB] [--smp N] [--timeout S]
#                    [--cpu MODEL] [--out-dir DIR] [--no-rebuild]
#
# Prepares Xen, dom0 and the domU with tests/xen/build.sh (cached in
# <build-dir>/xen; only dom0's initramfs is repacked), boots Debian's Xen
# with qemu-system-x86_64 -accel tcg (multiboot: Xen, then Debian's kernel
# as a PV dom0 and its initramfs as modules), and dom0 runs every
# tests/xen/guest/NN-*.sh. Prints the console with the elapsed seconds,
# then the failed checks and "N passed, N failed".
#   --build-dir DIR  meson build dir (default: build)
#   --mem MB         machine memory (default 2048; dom0 gets 768)
#   --smp N          machine CPUs (default 4; dom0 gets as many vCPUs)
#   --timeout S      limit for the machine, boot to power-off (default 900)
#   --cpu MODEL      QEMU's -cpu (default max: Xen needs its SVM + NPT)
#   --out-dir DIR    where the console log goes (default <build-dir>/xen/results)
#   --no-rebuild     do not run ninja first (meson test has built it all)
# Exit status: 0 if every check passed and no script failed, 77 if QEMU,
# Xen or the kernel cannot be obtained, 1 otherwise (a timeout or a crash
# included).
set -uo pipefail
shopt -s extglob
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$here/../.." && pwd)/build
mem=2048
smp=4
tmo=900
cpu=max
outdir=
bargs=()
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) build=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --timeout) tmo=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --out-dir) outdir=$2; shift 2 ;;
    --no-rebuild) bargs+=(--no-rebuild); shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

# 1. Xen, kernel, initramfs (build.sh exits 77 when they cannot be had)
bash "$here/build.sh" --build-dir "$build" "${bargs[@]}"
rc=$?
[ $rc -eq 77 ] && { echo "run.sh: SKIP: Xen cannot be prepared on this machine"; exit 77; }
[ $rc -eq 0 ] || { echo "run.sh: tests/xen/build.sh failed (status $rc)"; exit 1; }
xdir=$(cd "$build" && pwd)/xen
outdir=${outdir:-$xdir/results}
mkdir -p "$outdir"
log=$outdir/console.log

# 2. boot. Under TCG: smap=0 (dom0 crashes at start otherwise); the ELF
# hypervisor and an uncompressed vmlinux (the .gz and vmlinuz are slow or
# refused). Module arguments cannot hold commas.
# sched_credit_tslice_ms=1000: credit's per-CPU tick every 333 ms instead of
# 10 ms. Xen 4.17 clears a CPU's scheduler data before it stops that CPU's
# tick when the CPU leaves a credit pool; a tick in between dereferences
# NULL (panic in csched_tick). Under TCG on a loaded host the window is wide
# enough to hit in about half the runs of the group tests; a slower tick
# makes it about 33 times rarer (see README.md, "What we found").
xen_args="console=com1 com1=115200,8n1 dom0_mem=768M,max:768M dom0_max_vcpus=$smp sched=credit sched_credit_tslice_ms=1000 smap=0 loglvl=warning guest_loglvl=warning"
dom0_args="console=hvc0 earlyprintk=xen loglevel=3 rdinit=/init panic=-1 mitigations=off cryptomgr.notests"
us() { local t=${1/./}; echo $((10#$t)); }
echo "run.sh: qemu-system-x86_64 -accel tcg -cpu $cpu -smp $smp -m $mem (Xen + PV dom0), timeout ${tmo}s"
: >"$log"
pidf=$outdir/qemu.pid
rm -f "$pidf"
t0=$(us "$EPOCHREALTIME")
{
    timeout -k 10 "$tmo" qemu-system-x86_64 -accel tcg -cpu "$cpu" -smp "$smp" -m "$mem" \
        -nographic -no-reboot -nic none -pidfile "$pidf" \
        -kernel "$xdir/xen.elf" -append "$xen_args" \
        -initrd "$xdir/kernel/vmlinux $dom0_args,$xdir/initrd.img" </dev/null 2>&1
    echo "@@QEMU-EXIT rc=$?"
} | {
    while IFS= read -r line; do
        line=${line%$'\r'}
        line=${line//$'\e'[[(]*([0-9;?])[a-zA-Z]/}
        printf '%s\n' "$line" >>"$log"
        d=$(($(us "$EPOCHREALTIME") - t0))
        printf '[%4d.%01d] %s\n' $((d / 1000000)) $((d % 1000000 / 100000)) "$line"
        # dom0's power-off does not always stop the machine under Xen:
        # stop QEMU (by its pid) once the scripts are done.
        # A hypervisor panic ends in "Reboot in five seconds", which does
        # not reboot under TCG: stop QEMU once the backtrace is out.
        case $line in
        @@XEN-END*) (sleep 3; [ -s "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null) & ;;
        *"(XEN) Panic on CPU"*) (sleep 8; [ -s "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null) & ;;
        esac
    done
}
elapsed=$(($(us "$EPOCHREALTIME") - t0))

# 3. results
res=$(awk '
    /^@@SCRIPT-BEGIN / { script = $2; scripts++; next }
    /^@@PASS / { pass++; next }
    function named(what) { return index(what, script "/") == 1 || index(what, script " ") == 1 ? what : script "/" what }
    /^@@FAIL / { fail++; print "FAIL", named(substr($0, 8)); next }
    /^@@SKIP / { skip++; print "SKIP", named(substr($0, 8)); next }
    /^@@PROBE / { print "PROBE", substr($0, 9); next }
    /^@@XEN-END/ { ended = 1 }
    /^@@QEMU-EXIT rc=/ { qrc = substr($2, 4) }
    (/Kernel panic - not syncing/ || /Panic on CPU/) && !panic { panic = $0 }
    END { print "COUNTS", pass + 0, fail + 0, skip + 0, scripts + 0, ended + 0, qrc + 0
          if (panic) print "PANIC", panic }' "$log")
read -r _ pass fail skip nscripts ended qrc <<<"$(grep '^COUNTS ' <<<"$res")"
failed=$(sed -n 's/^FAIL //p' <<<"$res")
problems=
if grep -q '^PANIC ' <<<"$res"; then
    problems="${problems}panic: $(sed -n 's/^PANIC //p' <<<"$res")"$'\n'
elif [ "$ended" != 1 ] && { [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; }; then
    problems="${problems}timeout: dom0 did not finish in ${tmo}s (last script: $(grep '^@@SCRIPT-BEGIN' "$log" | tail -1 | cut -d' ' -f2))"$'\n'
elif [ "$ended" != 1 ]; then
    problems="${problems}dom0 stopped before the end of its scripts (qemu exit status $qrc)"$'\n'
elif [ "$nscripts" -le 1 ]; then
    problems="${problems}no test script ran"$'\n'
fi

echo
printf 'run.sh: %d script(s) in %d.%01ds; console: %s\n' "$nscripts" \
    $((elapsed / 1000000)) $((elapsed % 1000000 / 100000)) "$log"
sed -n 's/^SKIP /skipped: /p; s/^PROBE /probe: /p' <<<"$res"
[ -z "$failed" ] || sed 's/^/FAILED: /' <<<"$failed"
[ -z "$problems" ] || printf '%s' "$problems" | sed 's/^/FAILED: /'
nprob=$(printf '%s' "$problems" | grep -c . || true)
line="$pass passed, $((fail + nprob)) failed"
[ "$skip" -eq 0 ] || line="$line, $skip skipped"
echo "$line"
[ "$fail" -eq 0 ] && [ -z "$problems" ]
