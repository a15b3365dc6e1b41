#!/bin/bash
# Storage benchmark: vmiod against nbdkit's file plugin, both on TCP
# loopback and both serving the very same backing file, measured by the
# same client harness (vmio-bench storage, whose libnbd mode drives nbd://
# with the loop it uses for vmio://). fio's nbd engine is run on the NBD
# rows as a second, independent reference, and a local file:// sequential
# read of the same data gives the ceiling for the sequential read row.
# vmio:// is measured twice: over TCP (local=off, every byte through the
# server) and with the same-host data path (local=auto: the client takes
# over vmiod's descriptor after the handshake); the script checks that
# the second really went local.
#
# Page cache: the backing file is read into the page cache before every
# run and nothing is dropped, so both servers serve cached data; the
# numbers measure the protocol stacks, not the disk.
#
# Environment: RUNTIME (seconds per run, default 5), SIZE (backing file,
# default 256M), SEQ_QD (queue depth of the 1 MiB rows, default 8),
# REPEAT (rounds of every measurement, the best one is shown; default 1),
# FIO=0 to skip fio, LOCAL=0 to skip the local=on runs, PLACEMENT (free:
# the scheduler places servers and clients, the default; split: servers
# on CPU 0, clients on CPU 1; same: everything on CPU 0), BUILD_DIR (see
# bench/lib.sh), VMIOD_ARGS (extra vmiod options, e.g. "--poll-us 0").
# On a 2-CPU machine the free placement decides much of
# the QD1 latency (a wake-up on the other CPU costs an IPI), and it can
# favour either server by chance: split and same compare like with like.
# Output: a table on stdout, raw results in bench/out/storage-*.json.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNTIME=${RUNTIME:-5}
SIZE=${SIZE:-256M}
SEQ_QD=${SEQ_QD:-8}
FIO=${FIO:-1}
REPEAT=${REPEAT:-1}
LOCAL=${LOCAL:-1}
PLACEMENT=${PLACEMENT:-free}

storage_prepare
if [ "$FIO" = 1 ] && ! fio --enghelp=nbd >/dev/null 2>&1; then
    say "fio without the nbd engine: skipping the fio reference"
    FIO=0
fi

mkdir "$TMP/export" "$TMP/res"
DISK=$TMP/export/disk.img
say "writing a $SIZE backing file of random data"
head -c "$SIZE" /dev/urandom > "$DISK"
SIZE_BYTES=$(stat -c %s "$DISK")

start_vmiod disk "$TMP/export"
start_nbdkit "$DISK"
VMIO_URI="vmio://127.0.0.1:$VMIOD_PORT/disk/disk.img?local=off"
VMIO_LOCAL_URI="vmio://127.0.0.1:$VMIOD_PORT/disk/disk.img?local=on"
NBD_URI="nbd://127.0.0.1:$NBDKIT_PORT"
LOCAL_URI="file://$DISK"
if [ -n "$SRV_CPUS" ]; then
    taskset -apc "$SRV_CPUS" "$VMIOD_PID" >/dev/null
    taskset -apc "$SRV_CPUS" "$NBDKIT_PID" >/dev/null
fi

# name rw bs qd
ROWS=(
    "randread-4k-qd1 randread 4k 1"
    "randread-4k-qd32 randread 4k 32"
    "randwrite-4k-qd1 randwrite 4k 1"
    "randwrite-4k-qd32 randwrite 4k 32"
    "seqread-1m read 1M $SEQ_QD"
    "seqwrite-1m write 1M $SEQ_QD"
)

# Results go to numbered files, read back in order at the end.
n=0
next_result() { n=$((n + 1)); RESULT=$(printf '%s/%03d.json' "$TMP/res" "$n"); }

warm_cache() { cat "$DISK" > /dev/null; }

# run_bench ROW TARGET SERVER_PID URI RW BS QD
run_bench() {
    local row=$1 target=$2 spid=$3 uri=$4 rw=$5 bs=$6 qd=$7 c0 c1 out
    next_result
    warm_cache
    c0=0
    [ "$spid" = 0 ] || c0=$(cpu_seconds_of "$spid")
    out=$("${CLI[@]}" "$VMIO_BENCH" storage --json --rw "$rw" --bs "$bs" --qd "$qd" --runtime "$RUNTIME" \
        --size "$SIZE_BYTES" "$uri") || die "vmio-bench failed on $uri ($row)"
    if [ "$target" = vmio-local ]; then
        python3 -c 'import json,sys; sys.exit(not json.loads(sys.argv[1]).get("transport", "").startswith("local"))' \
            "$out" || die "local=on did not take the local data path ($row)"
    fi
    c1=0
    [ "$spid" = 0 ] || c1=$(cpu_seconds_of "$spid")
    printf '{"row": "%s", "target": "%s", "server_cpu_s": %s, "result": %s}\n' \
        "$row" "$target" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')" \
        "$out" > "$RESULT"
    say "  $target: $(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.1f MB/s, %.0f IOPS, p50 %.1f us" % (j["mb_per_s"], j["iops"], j["lat_us"]["p50"]))' "$out")"
}

# run_fio ROW RW BS QD
run_fio() {
    local row=$1 rw=$2 bs=$3 qd=$4 c0 c1
    next_result
    warm_cache
    c0=$(cpu_seconds_of "$NBDKIT_PID")
    "${CLI[@]}" fio --name="$row" --ioengine=nbd --uri="$NBD_URI" --rw="$rw" --bs="$bs" --iodepth="$qd" \
        --runtime="$RUNTIME" --time_based --size="$SIZE_BYTES" --lat_percentiles=1 \
        --output-format=json --output="$TMP/fio.json" >/dev/null 2>"$TMP/fio.err" ||
        { cat "$TMP/fio.err" >&2; die "fio failed ($row)"; }
    c1=$(cpu_seconds_of "$NBDKIT_PID")
    { printf '{"row": "%s", "target": "fio-nbd", "server_cpu_s": %s, "fio": ' "$row" \
          "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
      cat "$TMP/fio.json"
      printf '}\n'; } > "$RESULT"
}

say "backing file $DISK ($SIZE_BYTES bytes), $RUNTIME s per run"
say "vmiod  $VMIO_URI (pid $VMIOD_PID)"
say "nbdkit $NBD_URI (pid $NBDKIT_PID)"
for ((rep = 1; rep <= REPEAT; rep++)); do
    [ "$REPEAT" = 1 ] || say "round $rep of $REPEAT"
    for r in "${ROWS[@]}"; do
        read -r name rw bs qd <<<"$r"
        say "$name"
        run_bench "$name" vmio "$VMIOD_PID" "$VMIO_URI" "$rw" "$bs" "$qd"
        run_bench "$name" nbd "$NBDKIT_PID" "$NBD_URI" "$rw" "$bs" "$qd"
        if [ "$LOCAL" = 1 ]; then
            run_bench "$name" vmio-local "$VMIOD_PID" "$VMIO_LOCAL_URI" "$rw" "$bs" "$qd"
        fi
        if [ "$FIO" = 1 ]; then run_fio "$name" "$rw" "$bs" "$qd"; fi
    done
    say "seqread-1m local"
    run_bench seqread-1m local 0 "$LOCAL_URI" read 1M "$SEQ_QD"
done

OUT=$(out_file storage)
python3 - "$TMP/res" "$OUT" "$RUNTIME" "$SIZE_BYTES" "$SEQ_QD" "$(machine_json)" "$REPEAT" \
    "$PLACEMENT" "${VMIOD_ARGS:-}" <<'PY'
import json, os, sys

resdir, out, runtime, size, seq_qd, machine, repeat, placement, vmiod_args = sys.argv[1:10]
runs = []
for name in sorted(os.listdir(resdir)):
    with open(os.path.join(resdir, name)) as f:
        runs.append(json.load(f))

def norm(r):
    """One shape for vmio-bench and fio results."""
    if "result" in r:
        j = r["result"]
        return {"mb_per_s": j["mb_per_s"], "iops": j["iops"], "p50": j["lat_us"]["p50"],
                "p99": j["lat_us"]["p99"], "p99_9": j["lat_us"]["p99_9"],
                "client_cpu_s": j["client_cpu_s"], "server_cpu_s": r["server_cpu_s"]}
    job = r["fio"]["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
    pct = side.get("lat_ns", {}).get("percentile") or side["clat_ns"]["percentile"]
    return {"mb_per_s": side["bw_bytes"] / 1e6, "iops": side["iops"],
            "p50": pct["50.000000"] / 1e3, "p99": pct["99.000000"] / 1e3,
            "p99_9": pct["99.900000"] / 1e3,
            "client_cpu_s": (job["usr_cpu"] + job["sys_cpu"]) / 100 * float(runtime),
            "server_cpu_s": r["server_cpu_s"]}

table = {}
order = []
for r in runs:
    if r["row"] not in order:
        order.append(r["row"])
    m = norm(r)
    old = table.setdefault(r["row"], {}).get(r["target"])
    if not old or m["mb_per_s"] > old["mb_per_s"]:
        table[r["row"]][r["target"]] = m

def cell(m):
    if not m:
        return "%9s %9s %15s" % ("-", "-", "-")
    return "%9.1f %9.0f %7.0f/%-7.0f" % (m["mb_per_s"], m["iops"], m["p50"], m["p99"])

def ratio(a, b):
    return "%.2f" % (a["mb_per_s"] / b["mb_per_s"]) if a and b and b["mb_per_s"] else "-"

hdr = "%-18s | %9s %9s %15s | %9s %9s %15s | %8s | %9s %8s | %10s %10s" % (
    "row", "vmio MB/s", "IOPS", "p50/p99 us", "nbd MB/s", "IOPS", "p50/p99 us", "vmio/nbd",
    "fio MB/s", "vmio/fio", "local MB/s", "local/nbd")
print()
print("vmiod vs nbdkit file plugin, TCP loopback, one %d-byte backing file in the page" % int(size))
print("cache for both servers; %s s per run, best of %s; client: vmio-bench storage (same loop"
      % (runtime, repeat))
print("for vmio:// and nbd://); fio = fio's nbd engine against the same nbdkit.")
print("vmio = local=off (TCP); local = local=on (the client took over vmiod's descriptor).")
print("placement: %s" % placement)
print(hdr)
print("-" * len(hdr))
summary = []
for row in order:
    t = table[row]
    v, n, f, lo = t.get("vmio"), t.get("nbd"), t.get("fio-nbd"), t.get("vmio-local")
    if not v:
        continue
    print("%-18s | %s | %s | %8s | %9s %8s | %10s %10s" % (
        row, cell(v), cell(n), ratio(v, n), "%.1f" % f["mb_per_s"] if f else "-", ratio(v, f),
        "%.1f" % lo["mb_per_s"] if lo else "-", ratio(lo, n)))
    summary.append({"row": row, "vmio": v, "nbd": n, "fio_nbd": f, "vmio_local": lo,
                    "vmio_over_nbd": v["mb_per_s"] / n["mb_per_s"] if n else None,
                    "local_over_nbd": lo["mb_per_s"] / n["mb_per_s"] if lo and n else None})
local = table.get("seqread-1m", {}).get("local")
vseq = table.get("seqread-1m", {}).get("vmio")
lseq = table.get("seqread-1m", {}).get("vmio-local")
print()
print("server CPU seconds per run (vmiod / nbdkit):",
      ", ".join("%s %.1f/%.1f" % (row, table[row]["vmio"]["server_cpu_s"],
                                  table[row]["nbd"]["server_cpu_s"])
                for row in order if "vmio" in table[row] and "nbd" in table[row]))
if local and vseq:
    print("seqread-1m: vmio %.1f MB/s, local file:// %.1f MB/s: vmio/local = %.2f" % (
        vseq["mb_per_s"], local["mb_per_s"], vseq["mb_per_s"] / local["mb_per_s"]))
if local and lseq:
    print("seqread-1m: vmio local=on %.1f MB/s, local file:// %.1f MB/s: ratio = %.2f" % (
        lseq["mb_per_s"], local["mb_per_s"], lseq["mb_per_s"] / local["mb_per_s"]))
doc = {"benchmark": "storage", "runtime_s": float(runtime), "size": int(size),
       "repeat": int(repeat), "placement": placement, "vmiod_args": vmiod_args,
       "seq_qd": int(seq_qd), "machine": json.loads(machine), "summary": summary,
       "local_seqread": local, "runs": runs}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
print("raw results: %s" % os.path.relpath(out))
PY
