#!/bin/bash
# Two vmiod configurations and nbdkit on one storage row, interleaved:
# three servers on the very same backing file, one vmio-bench run each per
# round, in turn (each round starts with the next server, and the file is
# synced before every run, so that none always follows the same one), so
# that a slow moment of a shared machine hits all three alike. For server options whose effect is smaller than the run-to-run
# spread of bench/storage.sh (e.g. --splice on against --splice off).
#
# Environment: A_ARGS and B_ARGS (vmiod options of the two configurations,
# default "--splice on" and "--splice off"), RW, BS, QD (the row, default
# write 1M 8), ROUNDS (default 6), RUNTIME (seconds per run, default 5),
# SIZE (backing file, default 256M), PLACEMENT (free, split or same as in
# bench/storage.sh), BUILD_DIR (see bench/lib.sh).
# Output: each round, then the mean of each server and the ratios
# A / nbd, B / nbd and A / B; raw results in bench/out/storage-ab-*.json.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

A_ARGS=${A_ARGS---splice on}
B_ARGS=${B_ARGS---splice off}
RW=${RW:-write}
BS=${BS:-1M}
QD=${QD:-8}
ROUNDS=${ROUNDS:-6}
RUNTIME=${RUNTIME:-5}
SIZE=${SIZE:-256M}
PLACEMENT=${PLACEMENT:-free}

storage_prepare

mkdir "$TMP/export" "$TMP/res"
DISK=$TMP/export/disk.img
say "writing a $SIZE backing file of random data"
head -c "$SIZE" /dev/urandom > "$DISK"
SIZE_BYTES=$(stat -c %s "$DISK")

VMIOD_ARGS=$A_ARGS start_vmiod disk "$TMP/export"
PID_A=$VMIOD_PID
URI_A="vmio://127.0.0.1:$VMIOD_PORT/disk/disk.img?local=off"
VMIOD_ARGS=$B_ARGS start_vmiod disk "$TMP/export"
PID_B=$VMIOD_PID
URI_B="vmio://127.0.0.1:$VMIOD_PORT/disk/disk.img?local=off"
start_nbdkit "$DISK"
URI_N="nbd://127.0.0.1:$NBDKIT_PORT"
if [ -n "$SRV_CPUS" ]; then
    for p in "$PID_A" "$PID_B" "$NBDKIT_PID"; do taskset -apc "$SRV_CPUS" "$p" >/dev/null; done
fi

say "row: $RW $BS QD$QD, $ROUNDS rounds of ${RUNTIME}s, placement $PLACEMENT"
say "A: vmiod $A_ARGS; B: vmiod $B_ARGS; nbd: nbdkit file"
TARGETS=(A B nbd)
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
        t=${TARGETS[$(((r - 1 + i) % 3))]}
        case $t in
        A) uri=$URI_A pid=$PID_A ;;
        B) uri=$URI_B pid=$PID_B ;;
        nbd) uri=$URI_N pid=$NBDKIT_PID ;;
        esac
        sync "$DISK"
        cat "$DISK" > /dev/null
        c0=$(cpu_seconds_of "$pid")
        out=$("${CLI[@]}" "$VMIO_BENCH" storage --json --rw "$RW" --bs "$BS" --qd "$QD" \
            --runtime "$RUNTIME" --size "$SIZE_BYTES" "$uri") || die "vmio-bench failed on $uri"
        c1=$(cpu_seconds_of "$pid")
        printf '{"round": %d, "target": "%s", "server_cpu_s": %s, "result": %s}\n' "$r" "$t" \
            "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')" "$out" \
            > "$TMP/res/$(printf '%03d' "$r")-$t.json"
    done
done

OUT=$(out_file storage-ab)
python3 - "$TMP/res" "$OUT" "$A_ARGS" "$B_ARGS" "$RW" "$BS" "$QD" "$RUNTIME" "$PLACEMENT" \
    "$(machine_json)" <<'PY'
import json, os, sys

resdir, out, a_args, b_args, rw, bs, qd, runtime, placement, machine = sys.argv[1:11]
runs = [json.load(open(os.path.join(resdir, f))) for f in sorted(os.listdir(resdir))]
by = {"A": [], "B": [], "nbd": []}
for x in runs:
    by[x["target"]].append(x)
    j = x["result"]
    print("round %d %-3s %8.1f MB/s  p50 %6.0f us  p99 %6.0f us  server CPU %.2f s" % (
        x["round"], x["target"], j["mb_per_s"], j["lat_us"]["p50"], j["lat_us"]["p99"],
        x["server_cpu_s"]))
mean = {t: sum(x["result"]["mb_per_s"] for x in v) / len(v) for t, v in by.items()}
for t in ("A", "B", "nbd"):
    v = [x["result"]["mb_per_s"] for x in by[t]]
    print("%-3s mean %8.1f MB/s (%.1f to %.1f)" % (t, mean[t], min(v), max(v)))
ratios = {"A/nbd": mean["A"] / mean["nbd"], "B/nbd": mean["B"] / mean["nbd"],
          "A/B": mean["A"] / mean["B"]}
print("A/nbd %.2f  B/nbd %.2f  A/B %.2f" % (ratios["A/nbd"], ratios["B/nbd"], ratios["A/B"]))
print("raw results:", os.path.relpath(out))
with open(out, "w") as f:
    json.dump({"a_args": a_args, "b_args": b_args, "rw": rw, "bs": bs, "qd": int(qd),
               "runtime_s": int(runtime), "placement": placement, "machine": json.loads(machine),
               "mean_mb_per_s": mean, "ratios": ratios, "runs": runs}, f, indent=1)
PY
