#!/bin/bash
# tests/vm/run.sh: run guest test scripts in a Linux VM under QEMU TCG.
#
#   tests/vm/run.sh [--build-dir DIR] [--mem MB] [--smp N] [--timeout S]
#                   [--script PATH]... [--out-dir DIR] [--no-rebuild]
#                   [--vm-dir DIR] [--mem-path FILE] [--qmp SOCKET] [--disk IMG]
#                   [--scratch-disk SIZE]
#
# Prepares the guest with tests/vm/build.sh (cached in <build-dir>/vm; only
# the initramfs is repacked), boots Debian's kernel with
# qemu-system-x86_64 -accel tcg and runs every tests/vm/guest/NN-*.sh in
# order, or only the --script files. Prints the console with the elapsed
# seconds, then the failed checks and "N passed, N failed".
#   --build-dir DIR  meson build dir (default: build)
#   --mem MB         guest memory (default 1024)
#   --smp N          guest CPUs (default 2)
#   --timeout S      limit for the guest, boot to power-off (default 600)
#   --out-dir DIR    where the console log and the files the guest exported
#                    with vm_export go (default <build-dir>/vm/results)
#   --no-rebuild     do not run ninja first (meson test has built it all)
#   --vm-dir DIR     build.sh's out dir (default <build-dir>/vm, or
#                    <build-dir>/vm-extra when VM_EXTRA_PKGS is set)
#   --mem-path FILE  guest RAM backed by FILE (memory-backend-file,
#                    share=on): the host sees the guest's memory there
#   --qmp SOCKET     a QMP server on the unix socket SOCKET
#   --disk IMG       IMG as a read-only virtio disk (/dev/vda in the guest)
#   --scratch-disk SIZE  a fresh, empty writable disk of SIZE (truncate's
#                    syntax: 2G, 512M) as a virtio disk with serial
#                    vmio-scratch (/sys/block/vdX/serial in the guest),
#                    cache=none: guest I/O reaches the host's disk. The raw
#                    file lives in the out dir while the guest runs and is
#                    removed afterwards
# Exit status: 0 if every check passed and no script failed, 77 if QEMU or
# the kernel cannot be obtained, 1 otherwise (a timeout or a kernel panic
# included).
set -uo pipefail
shopt -s extglob
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$here/../.." && pwd)/build
mem=1024
smp=2
tmo=600
outdir=
vmdir=
mempath=
qmp=
disk=
scratch=
bargs=()
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) build=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --timeout) tmo=$2; shift 2 ;;
    --script) bargs+=(--script "$2"); shift 2 ;;
    --out-dir) outdir=$2; shift 2 ;;
    --no-rebuild) bargs+=(--no-rebuild); shift ;;
    --vm-dir) vmdir=$2; shift 2 ;;
    --mem-path) mempath=$2; shift 2 ;;
    --qmp) qmp=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --scratch-disk) scratch=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

# 1. kernel + initramfs (build.sh exits 77 if QEMU or the kernel is missing)
if [ -z "$vmdir" ]; then
    vmdir=$build/vm
    [ -z "${VM_EXTRA_PKGS:-}" ] || vmdir=$build/vm-extra
fi
bash "$here/build.sh" --build-dir "$build" --out "$vmdir" "${bargs[@]}"
rc=$?
[ $rc -eq 77 ] && { echo "run.sh: SKIP: the VM cannot be prepared on this machine"; exit 77; }
[ $rc -eq 0 ] || { echo "run.sh: tests/vm/build.sh failed (status $rc)"; exit 1; }
vm=$(cd "$vmdir" && pwd)
outdir=${outdir:-$vm/results}
mkdir -p "$outdir"
log=$outdir/console.log
# Files exported by the previous run are removed, nothing else.
if [ -f "$outdir/.exports" ]; then
    while read -r f; do rm -f "$outdir/$f"; done <"$outdir/.exports"
fi
: >"$outdir/.exports"

# 2. boot; the console goes to the log, and to stdout with elapsed seconds
# (exported files are shown as one line).
us() { local t=${1/./}; echo $((10#$t)); }
# qboot (from QEMU's data files) starts the kernel ~1 s sooner than SeaBIOS.
bios=()
qemu_data=$(dirname "$(readlink -f "$(command -v qemu-system-x86_64)")")/../share/qemu
[ -f "$qemu_data/qboot.rom" ] && bios=(-bios qboot.rom)
# Optional: RAM in a shared file, a QMP socket, a read-only disk.
extra=()
[ -z "$mempath" ] || extra+=(-object "memory-backend-file,id=mem,size=${mem}M,mem-path=$mempath,share=on"
    -machine memory-backend=mem)
[ -z "$qmp" ] || extra+=(-qmp "unix:$qmp,server=on,wait=off")
[ -z "$disk" ] || extra+=(-drive "file=$disk,if=virtio,format=raw,readonly=on")
if [ -n "$scratch" ]; then
    # O_DIRECT (cache=none) with Linux native AIO: never the host's page
    # cache, so the guest sees the speed of a disk.
    sfile=$(mktemp "$outdir/.scratch-disk.XXXXXX") && truncate -s "$scratch" "$sfile" ||
        { echo "run.sh: cannot make a $scratch scratch disk in $outdir"; rm -f "${sfile:-}"; exit 1; }
    trap 'rm -f "$sfile"' EXIT
    dd if=/dev/zero of="$sfile" bs=4096 count=1 oflag=direct conv=notrunc status=none 2>/dev/null ||
        { echo "run.sh: $outdir does not support O_DIRECT: --scratch-disk needs a disk file system"; exit 1; }
    extra+=(-drive "file=$sfile,if=none,id=scratch,format=raw,cache=none,aio=native,discard=unmap"
        -device "virtio-blk-pci,drive=scratch,serial=vmio-scratch")
fi
echo "run.sh: qemu-system-x86_64 -accel tcg -smp $smp -m $mem ${bios[*]}${extra[*]:+ ${extra[*]}}, timeout ${tmo}s"
: >"$log"
t0=$(us "$EPOCHREALTIME")
{
    timeout -k 10 "$tmo" qemu-system-x86_64 "${bios[@]}" -accel tcg -cpu max -smp "$smp" -m "$mem" \
        -nographic -no-reboot -nic none "${extra[@]}" \
        -kernel "$vm/kernel/vmlinux" -initrd "$vm/initrd.img" \
        -append "console=ttyS0 loglevel=3 panic=-1 mitigations=off rdinit=/init cryptomgr.notests" \
        </dev/null 2>&1
    echo "@@QEMU-EXIT rc=$?"
} | {
    infile=0
    while IFS= read -r line; do
        line=${line%$'\r'}
        line=${line//$'\e'[[(]*([0-9;?])[a-zA-Z]/} # terminal escapes
        printf '%s\n' "$line" >>"$log"
        case $line in
        @@FILE-BEGIN*) infile=1; n=0 ;;
        @@FILE-END*) infile=0; line="$line ($n lines of base64)" ;;
        *) [ $infile = 1 ] && { n=$((n + 1)); continue; } ;;
        esac
        d=$(($(us "$EPOCHREALTIME") - t0))
        printf '[%4d.%01d] %s\n' $((d / 1000000)) $((d % 1000000 / 100000)) "$line"
    done
}
elapsed=$(($(us "$EPOCHREALTIME") - t0))

# 3. results: checks, scripts that failed, exported files, how it ended.
res=$(awk -v out="$outdir" '
    function fname(n) { return (n ~ /^[A-Za-z0-9_][A-Za-z0-9._-]*$/) ? n : "" }
    infile && /^@@FILE-END / { close(b64); infile = 0; print "FILE", $2, $3; next }
    infile { if ($0 ~ /^[A-Za-z0-9+\/=]+$/) print > b64; next }
    /^@@FILE-BEGIN / { if (fname($2) != "") { b64 = out "/" $2 ".b64"; printf "" > b64; infile = 1 }
                       else print "BADNAME", $2; next }
    /^@@SCRIPT-BEGIN / { script = $2; scripts++; next }
    /^@@PASS / { pass++; next }
    function named(what) { return index(what, script " ") == 1 ? what : script "/" what }
    /^@@FAIL / { fail++; print "FAIL", named(substr($0, 8)); next }
    /^@@SKIP / { skip++; print "SKIP", named(substr($0, 8)); next }
    /^@@VM-END/ { ended = 1 }
    /^@@QEMU-EXIT rc=/ { qrc = substr($2, 4) }
    /Kernel panic - not syncing/ && !panic { panic = $0 }
    END { print "COUNTS", pass + 0, fail + 0, skip + 0, scripts + 0, ended + 0, qrc + 0
          if (panic) print "PANIC", panic }' "$log")
read -r _ pass fail skip nscripts ended qrc <<<"$(grep '^COUNTS ' <<<"$res")"
failed=$(sed -n 's/^FAIL //p' <<<"$res")
problems=
while read -r _ name sum; do
    [ -n "$name" ] || continue
    if base64 -d "$outdir/$name.b64" >"$outdir/$name" 2>/dev/null &&
        [ "$(md5sum <"$outdir/$name" | cut -d' ' -f1)" = "$sum" ]; then
        echo "$name" >>"$outdir/.exports"
        echo "run.sh: exported $outdir/$name"
    else
        problems="${problems}exported file $name arrived damaged"$'\n'
        rm -f "$outdir/$name"
    fi
    rm -f "$outdir/$name.b64"
done <<<"$(grep '^FILE ' <<<"$res")"
while read -r _ name; do
    [ -n "$name" ] && problems="${problems}vm_export: bad file name '$name'"$'\n'
done <<<"$(grep '^BADNAME ' <<<"$res")"
if grep -q '^PANIC ' <<<"$res"; then
    problems="${problems}the guest kernel panicked: $(sed -n 's/^PANIC //p' <<<"$res")"$'\n'
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    problems="${problems}timeout: the guest did not finish in ${tmo}s (last script: $(grep '^@@SCRIPT-BEGIN' "$log" | tail -1 | cut -d' ' -f2))"$'\n'
elif [ "$ended" != 1 ]; then
    problems="${problems}the guest stopped before the end of its scripts (qemu exit status $qrc)"$'\n'
elif [ "$nscripts" = 0 ]; then
    problems="${problems}no guest script ran"$'\n'
fi

echo
printf 'run.sh: %d script(s) in %d.%01ds; console: %s\n' "$nscripts" \
    $((elapsed / 1000000)) $((elapsed % 1000000 / 100000)) "$log"
sed -n 's/^SKIP /skipped: /p' <<<"$res"
[ -z "$failed" ] || sed 's/^/FAILED: /' <<<"$failed"
[ -z "$problems" ] || printf '%s' "$problems" | sed 's/^/FAILED: /'
nprob=$(printf '%s' "$problems" | grep -c . || true)
line="$pass passed, $((fail + nprob)) failed"
[ "$skip" -eq 0 ] || line="$line, $skip skipped"
echo "$line"
[ "$fail" -eq 0 ] && [ -z "$problems" ]
