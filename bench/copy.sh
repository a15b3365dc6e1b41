#!/bin/bash
# Copy benchmark: vmio-cp against qemu-img convert and nbdcopy on the same
# half-sparse raw image, locally (file to file) and to a server on TCP
# loopback (vmio-cp to vmiod, nbdcopy and qemu-img to nbdkit's file plugin;
# vmio-cp once more with local=on, where it takes over vmiod's descriptor).
#
# Image layout (SIZE_MIB total, default 2048): SEG_MIB (default 64) MiB of
# random data, then SEG_MIB MiB of hole, repeated, so half of the image is
# data and half is holes, with the holes known to SEEK_HOLE.
#
# Every copy is durable: vmio-cp always flushes the destination, qemu-img
# runs with -t writeback (which flushes when it closes the image; its
# default for convert is cache=unsafe, no flush) and nbdcopy with --flush.
# The tools' no-flush defaults are measured too, as a reference.
#
# Best (and median) of RUNS (default 3) wall-clock times, the tools taking
# turns; the destination is removed (or, for nbdkit, emptied in place)
# before each run. Nothing is dropped from the page cache: the source
# stays cached, so the numbers compare the copy engines, not the disk.
# Each destination is compared with cmp once.
#
# Environment: SIZE_MIB, SEG_MIB, RUNS, BUILD_DIR (see bench/lib.sh).
# Output: a table on stdout, raw results in bench/out/copy-*.json.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-2048}
SEG_MIB=${SEG_MIB:-64}
RUNS=${RUNS:-3}

require_cmd meson ninja nbdkit nbdcopy qemu-img python3 cmp
bench_build

SRC=$TMP/src.img
mkdir "$TMP/local" "$TMP/remote" "$TMP/res"
declare -A SAME ALLOC
say "making a $SIZE_MIB MiB image: $SEG_MIB MiB data / $SEG_MIB MiB hole, repeated"
truncate -s "${SIZE_MIB}M" "$SRC"
off=0
while [ "$off" -lt "$SIZE_MIB" ]; do
    head -c "${SEG_MIB}M" /dev/urandom |
        dd of="$SRC" bs=1M seek="$off" conv=notrunc status=none
    off=$((off + 2 * SEG_MIB))
done
SIZE_BYTES=$(stat -c %s "$SRC")
DATA_BYTES=$(( $(stat -c %b "$SRC") * $(stat -c %B "$SRC") ))

start_vmiod remote "$TMP/remote"
NBD_DST=$TMP/remote/nbd.img
truncate -s "$SIZE_BYTES" "$NBD_DST"
start_nbdkit "$NBD_DST"
VMIO_DST_URI="vmio://127.0.0.1:$VMIOD_PORT/remote/vmio.img"
NBD_URI="nbd://127.0.0.1:$NBDKIT_PORT"

# Empty the nbdkit destination in place (nbdkit keeps it open): reads as
# zeroes, no blocks allocated, same size.
empty_nbd_dst() { truncate -s 0 "$NBD_DST" && truncate -s "$SIZE_BYTES" "$NBD_DST"; }

# add_case NAME GROUP DEST-FILE PREP-COMMAND -- COMMAND...
C_NAME=() C_GROUP=() C_DEST=() C_PREP=() C_CMD=()
add_case() {
    C_NAME+=("$1") C_GROUP+=("$2") C_DEST+=("$3") C_PREP+=("$4")
    shift 5
    C_CMD+=("$(printf '%q ' "$@")")
}

LD=$TMP/local/dst.img
VD=$TMP/remote/vmio.img
rm_ld="rm -f $(printf %q "$LD")"
rm_vd="rm -f $(printf %q "$VD")"
add_case vmio-cp local "$LD" "$rm_ld" -- \
    "$VMIO_CP" -q "$SRC" "$LD"
add_case "qemu-img convert -t writeback" local "$LD" "$rm_ld" -- \
    qemu-img convert -t writeback -f raw -O raw "$SRC" "$LD"
add_case "qemu-img convert -t writeback -m 16 -W" local "$LD" "$rm_ld" -- \
    qemu-img convert -t writeback -m 16 -W -f raw -O raw "$SRC" "$LD"
add_case "nbdcopy --flush" local "$LD" "$rm_ld" -- \
    nbdcopy --flush "$SRC" "$LD"
add_case "qemu-img convert (no flush)" local-noflush "$LD" "$rm_ld" -- \
    qemu-img convert -f raw -O raw "$SRC" "$LD"
add_case "qemu-img convert -m 16 -W (no flush)" local-noflush "$LD" "$rm_ld" -- \
    qemu-img convert -m 16 -W -f raw -O raw "$SRC" "$LD"
add_case "nbdcopy (no flush)" local-noflush "$LD" "$rm_ld" -- \
    nbdcopy "$SRC" "$LD"
add_case "vmio-cp -> vmiod" remote "$VD" "$rm_vd" -- \
    "$VMIO_CP" -q "$SRC" "$VMIO_DST_URI"
add_case "vmio-cp -> vmiod, local=on" remote "$VD" "$rm_vd" -- \
    "$VMIO_CP" -q "$SRC" "$VMIO_DST_URI?local=on"
add_case "nbdcopy --flush -> nbdkit" remote "$NBD_DST" empty_nbd_dst -- \
    nbdcopy --flush "$SRC" "$NBD_URI"
add_case "nbdcopy --flush --target-is-zero -> nbdkit" remote "$NBD_DST" empty_nbd_dst -- \
    nbdcopy --flush --target-is-zero "$SRC" "$NBD_URI"
add_case "qemu-img convert -n -t writeback -m 16 -W -> nbdkit" remote "$NBD_DST" \
    empty_nbd_dst -- \
    qemu-img convert -n -t writeback -m 16 -W -f raw -O raw "$SRC" "$NBD_URI"

# Round robin: run 1 of every case, then run 2, ... so that a slow phase
# of the machine does not hit one tool only. Each case's destination is
# compared with the source after its first run.
declare -A TIMES
for ((run = 0; run < RUNS; run++)); do
    say "run $((run + 1)) of $RUNS"
    for i in "${!C_NAME[@]}"; do
        eval "${C_PREP[$i]}"
        t0=$(now_ns)
        eval "${C_CMD[$i]}" >/dev/null 2>"$TMP/cmd.err" ||
            { cat "$TMP/cmd.err" >&2; die "${C_NAME[$i]} failed: ${C_CMD[$i]}"; }
        t1=$(now_ns)
        ms=$(( (t1 - t0) / 1000000 ))
        TIMES[$i]="${TIMES[$i]:-} $ms"
        say "  $(printf '%-52s %6d ms' "${C_NAME[$i]}" "$ms")"
        if [ "$run" = 0 ]; then
            same=true
            cmp -s "$SRC" "${C_DEST[$i]}" || same=false
            [ "$same" = true ] || say "  WARNING: ${C_DEST[$i]} differs from the source"
            SAME[$i]=$same
            ALLOC[$i]=$(( $(stat -c %b "${C_DEST[$i]}") * $(stat -c %B "${C_DEST[$i]}") ))
        fi
    done
done
for i in "${!C_NAME[@]}"; do
    # shellcheck disable=SC2086 # TIMES holds one word per run
    python3 - "$TMP/res/$(printf %03d "$i").json" "${C_NAME[$i]}" "${C_GROUP[$i]}" \
        "${SAME[$i]}" "${ALLOC[$i]}" "${C_CMD[$i]}" "$BENCH_ROOT" "$TMP" ${TIMES[$i]} <<'PY'
import json, statistics, sys
out, name, group, same, alloc, cmd, root, tmp = sys.argv[1:9]
times = [int(x) for x in sys.argv[9:]]
# Record the command as it reads from the source tree, scratch dir as $TMP.
cmd = cmd.replace(root + "/", "").replace(tmp, "$TMP")
json.dump({"name": name, "group": group, "best_ms": min(times),
           "median_ms": statistics.median(times), "times_ms": times,
           "identical": same == "true", "allocated_bytes": int(alloc),
           "command": cmd.strip()}, open(out, "w"))
PY
done

OUT=$(out_file copy)
python3 - "$TMP/res" "$OUT" "$SIZE_BYTES" "$DATA_BYTES" "$SEG_MIB" "$RUNS" "$(machine_json)" <<'PY'
import json, os, sys
resdir, out, size, data, seg, runs, machine = sys.argv[1:8]
size, data = int(size), int(data)
res = []
for name in sorted(os.listdir(resdir)):
    with open(os.path.join(resdir, name)) as f:
        res.append(json.load(f))
print()
print("copy of a %d MiB raw image (%d MiB data in %s MiB runs, the rest holes), best of %s,"
      % (size >> 20, data >> 20, seg, runs))
print("source in the page cache; durable copies unless marked (no flush)")
hdr = "%-52s %8s %8s %11s %8s %5s %9s" % (
    "tool", "best ms", "median", "MB/s image", "vs vmio", "cmp", "alloc MiB")
for group, title in (("local", "local file -> local file"),
                     ("local-noflush", "reference: tools' defaults, no flush at the end"),
                     ("remote", "local file -> server on TCP loopback")):
    rows = [r for r in res if r["group"] == group]
    if not rows:
        continue
    base = next((r for r in res if r["group"] == group and r["name"].startswith("vmio-cp")),
                None) or next(r for r in res if r["name"] == "vmio-cp")
    print()
    print(title)
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print("%-52s %8d %8d %11.0f %8.2f %5s %9d" % (
            r["name"], r["best_ms"], r["median_ms"], size / 1e6 / (r["best_ms"] / 1e3),
            r["best_ms"] / base["best_ms"], "ok" if r["identical"] else "DIFF",
            r["allocated_bytes"] >> 20))
print()
print("'vs vmio' = best time / best vmio-cp time of the same group (> 1: vmio-cp is faster);")
print("MB/s image = image size / best time")
json.dump({"benchmark": "copy", "size": size, "data_bytes": data, "segment_mib": int(seg),
           "runs": int(runs), "machine": json.loads(machine), "results": res},
          open(out, "w"), indent=1)
print("raw results: %s" % os.path.relpath(out))
PY
