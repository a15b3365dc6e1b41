#!/bin/bash
# Gfarm benchmark: libvmio's gfarm:// backend against the gfarm2fs FUSE
# mount, on one private Gfarm (PostgreSQL + gfmd + one gfsd on loopback,
# made by scripts/gfarm-local.sh under the scratch directory and removed at
# exit), one image, one run: the storage paper's table.
#
# Columns (every one reads and writes the same Gfarm file):
#   direct     vmio-bench on gfarm:///DIR/img.raw: libvmio's helper
#              processes talking to gfsd, with the backend's defaults
#              (helpers=4, cache=stream: read-ahead and write-behind of
#              small sequential I/O) unless GFARM_OPTS says otherwise
#   vmiod      vmio-bench on the same gfarm:// URI with a routes table
#              naming a vmiod that exports the Gfarm directory
#              (route=vmiod: fails instead of falling back; every run must
#              report the backend "gfarm+vmio")
#   qemu       qemu-img bench with the libvmio block driver on gfarm://
#              (only when scripts/qemu-build.sh has built it)
#   gfarm2fs   the FUSE mount with default options and with -o big_writes,
#              each measured by vmio-bench on the mounted path (plain
#              buffered I/O: vmio-bench never asks for O_DIRECT) and by fio
#              (psync, or libaio for the QD32 rows, buffered and O_DIRECT);
#              the best of those figures is the gfarm2fs figure of a row
#
# vmio-bench runs the QD1 rows with --sync (blocking calls on one thread,
# as dd and fio's psync engine do) and the QD32 rows with the async API.
#
# Rows: sequential ("dd-like") 4 KiB and 1 MiB reads at QD1 with the gfsd
# cache warm and cold, 4 KiB random reads at QD1 and QD32, then the writes
# (sequential 4 KiB and 1 MiB at QD1, random 4 KiB at QD1 and QD32), so no
# read row sees a file that a write row is rewriting. The image is filled
# with random data before the first row; writes overwrite it with random
# data, so it stays fully written.
#
# Sequential reads are dd-like: one pass over the image at most (RUNTIME
# caps it), so that no client re-reads what its own page cache kept from
# the first pass (gfarm2fs keeps a file's pages until its next open).
#
# Caches: "warm" rows read the gfsd spool file into the page cache first;
# "cold" rows run `sync; echo 3 > /proc/sys/vm/drop_caches` first (root
# only). With everything on one machine that drops every cache (gfsd's
# spool file, the FUSE client's pages, gfmd's and PostgreSQL's). direct_local_access stays disabled (the
# default of scripts/gfarm-local.sh), so every client reaches the data
# through gfsd over TCP, as it would from another host.
#
# Environment:
#   RUNTIME     seconds per measurement (default 5)
#   SIZE        image size (default 1G)
#   REPEAT      rounds; the best figure of each cell is shown (default 1)
#   COLD=0      skip the cold-cache rows (they need root)
#   ONLY        run only these rows (names as in ROWS below, space-separated)
#   FIO=0       skip fio;  FIO_DIRECT  fio's --direct values (default "0 1")
#   ROUTED_OPTS URI options added to the vmiod column's, e.g. "cache=none"
#   GFARM_OPTS  URI options of the direct and qemu columns, e.g.
#               "helpers=8" or "cache=none" (default: none, the backend's)
#   FUSE_EXTRA  gfarm2fs -o options of an extra FUSE column, e.g.
#               "unbuffered,big_writes" (default: none)
#   QEMU=0      skip the QEMU column;  QEMU_IMG  the qemu-img to use
#               (default ${VMIO_QEMU_DIR:-build-qemu}/qemu-build/qemu-img)
#   BUILD_DIR, TMPDIR  see bench/lib.sh
# Output: a table on stdout, raw results in bench/out/gfarm-*.json.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNTIME=${RUNTIME:-5}
SIZE=${SIZE:-1G}
REPEAT=${REPEAT:-1}
COLD=${COLD:-1}
ONLY=${ONLY:-}
FIO=${FIO:-1}
FIO_DIRECT=${FIO_DIRECT:-0 1}
GFARM_OPTS=${GFARM_OPTS:-}
FUSE_EXTRA=${FUSE_EXTRA:-}
QEMU=${QEMU:-1}
GFARM_LOCAL=$BENCH_ROOT/scripts/gfarm-local.sh
GDIR=/vmio-bench
IMG=img.raw

export PATH=$PATH:/usr/sbin
require_cmd meson ninja python3 numfmt flock gfarm2fs fusermount gfmkdir gfls
SIZE_BYTES=$(numfmt --from=iec "$SIZE") || die "SIZE: not a size: $SIZE"
if [ $((SIZE_BYTES % 1048576)) -ne 0 ] || [ "$SIZE_BYTES" -lt 16777216 ]; then
    die "SIZE must be a multiple of 1 MiB and at least 16M"
fi

if [ "$COLD" = 1 ] && ! [ -w /proc/sys/vm/drop_caches ]; then
    say "cannot write /proc/sys/vm/drop_caches (not root): skipping the cold-cache rows"
    COLD=0
fi
if [ "$FIO" = 1 ] && ! command -v fio >/dev/null 2>&1; then
    say "fio is not installed: gfarm2fs is measured with vmio-bench only"
    FIO=0
fi

bench_build
ninja -C "$BUILD_DIR" libvmio/vmio-gfarm-helper >/dev/null 2>&1 ||
    die "$BUILD_DIR has no gfarm:// backend (install libgfarm-dev: scripts/gfarm-local.sh install, then reconfigure)"
export VMIO_GFARM_HELPER=$BENCH_ROOT/$BUILD_DIR/libvmio/vmio-gfarm-helper

# ---- QEMU (optional) ----------------------------------------------------

QEMU_NOTE=
QEMU_HELPER=$VMIO_GFARM_HELPER
if [ "$QEMU" = 1 ]; then
    QDIR=${VMIO_QEMU_DIR:-$BENCH_ROOT/build-qemu}
    QEMU_IMG=${QEMU_IMG:-$QDIR/qemu-build/qemu-img}
    if [ ! -x "$QEMU_IMG" ]; then
        QEMU_NOTE="no QEMU with the vmio driver ($QEMU_IMG missing: run scripts/qemu-build.sh)"
        QEMU=0
    elif ! "$QEMU_IMG" --help 2>/dev/null | grep -q 'Supported formats:.* vmio-gfarm'; then
        QEMU_NOTE="$QEMU_IMG has no gfarm:// protocol (its libvmio lacks the gfarm backend)"
        QEMU=0
    else
        # The helper must come from the libvmio build that qemu-img loads.
        [ ! -x "$QDIR/libvmio/libvmio/vmio-gfarm-helper" ] ||
            QEMU_HELPER=$QDIR/libvmio/libvmio/vmio-gfarm-helper
        QEMU_NOTE="qemu-img bench, vmio driver, gfarm:// ($("$QEMU_IMG" --version | head -n 1))"
    fi
else
    QEMU_NOTE="skipped (QEMU=0)"
fi
[ "$QEMU" = 1 ] || say "QEMU column: $QEMU_NOTE"

# ---- cleanup: unmount, stop vmiod, stop Gfarm, then lib.sh's cleanup ----

GF_BASE=$TMP/gfarm
GF_STARTED=0
MOUNTS=()
gfarm_bench_cleanup() {
    local m p
    for m in ${MOUNTS[@]+"${MOUNTS[@]}"}; do
        if mountpoint -q "$m" 2>/dev/null; then
            fusermount -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                say "warning: could not unmount $m"
        fi
    done
    for p in ${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}; do
        kill "$p" 2>/dev/null || true
    done
    for p in ${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}; do
        wait "$p" 2>/dev/null || true
    done
    BENCH_PIDS=()
    if [ "$GF_STARTED" = 1 ]; then
        GFARM_BASE=$GF_BASE bash "$GFARM_LOCAL" stop purge >"$TMP/gfarm-stop.log" 2>&1 ||
            { cat "$TMP/gfarm-stop.log" >&2; say "warning: could not stop the Gfarm under $GF_BASE"; }
    fi
    bench_cleanup
}
trap gfarm_bench_cleanup EXIT

# ---- Gfarm --------------------------------------------------------------

# PostgreSQL runs as "postgres" when we are root: it must reach $TMP/gfarm.
[ "$(id -u)" -ne 0 ] || chmod 711 "$TMP"
say "starting a private Gfarm under the scratch directory"
GF_STARTED=1
# The lock serialises the choice of free ports with other users of the
# script (the integration tests take the same lock).
if ! GFARM_BASE=$GF_BASE GFARM_PORT_BASE=auto GFARM_DIRECT_LOCAL_ACCESS=disable \
    flock -o -w 120 "${TMPDIR:-/tmp}/vmio-gfarm-setup.lock" \
    bash "$GFARM_LOCAL" setup --one >"$TMP/gfarm-setup.log" 2>&1; then
    cat "$TMP/gfarm-setup.log" >&2
    die "could not start Gfarm (scripts/gfarm-local.sh install installs it)"
fi
eval "$(GFARM_BASE=$GF_BASE bash "$GFARM_LOCAL" env)"
export GFARM_CONFIG_FILE
grep -qx 'direct_local_access disable' "$GFARM_CONFIG_FILE" ||
    die "the client configuration does not disable direct_local_access"
gfmkdir "$GDIR" || die "gfmkdir $GDIR failed"

DIRECT_URI="gfarm://$GDIR/$IMG"
[ -z "$GFARM_OPTS" ] || DIRECT_URI="$DIRECT_URI?$GFARM_OPTS"

say "writing a $SIZE image of random data in Gfarm ($DIRECT_URI)"
"$VMIO_BENCH" storage --rw read --bs 1M --qd 1 --ops 1 --size "$SIZE_BYTES" --json \
    "gfarm://$GDIR/$IMG" >"$TMP/fill.json" || die "could not create and fill the image"
[ "$(gfls -l "$GDIR/$IMG" | awk '{ print $5 }')" = "$SIZE_BYTES" ] ||
    die "the image has the wrong size in Gfarm: $(gfls -l "$GDIR/$IMG")"

# The gfsd spool file of the image (its name changes with every write).
spool_file() {
    find "$GF_BASE"/spool* -type f -size "$((SIZE_BYTES / 512))" 2>/dev/null | head -n 1
}
[ -n "$(spool_file)" ] || die "cannot find the image in the gfsd spool"

# ---- vmiod and the routes table ----------------------------------------

start_vmiod images "gfarm://$GDIR"
cat > "$TMP/routes" <<EOF
# gfsd host   vmiod export                       Gfarm directory
$GF_HOST1     vmio://127.0.0.1:$VMIOD_PORT/images   $GDIR
EOF
ROUTED_URI="gfarm://$GDIR/$IMG?route=vmiod&routes=$TMP/routes${ROUTED_OPTS:+&$ROUTED_OPTS}"

# ---- gfarm2fs mounts ----------------------------------------------------

# fuse_mount NAME OPTIONS: mount the Gfarm directory at $TMP/mnt-NAME.
fuse_mount() {
    local dir=$TMP/mnt-$1 opts=modules=subdir,subdir=$GDIR
    [ -z "$2" ] || opts=$opts,$2
    mkdir -p "$dir"
    MOUNTS+=("$dir")
    gfarm2fs "$dir" -o "$opts" >"$TMP/gfarm2fs-$1.log" 2>&1 ||
        { cat "$TMP/gfarm2fs-$1.log" >&2; die "gfarm2fs -o $opts failed"; }
    mountpoint -q "$dir" || die "gfarm2fs returned but $dir is not a mount point"
    [ "$(stat -c %s "$dir/$IMG")" = "$SIZE_BYTES" ] || die "gfarm2fs shows a wrong size"
}
FUSES=("default|")
fuse_mount default ""
FUSES+=("big_writes|big_writes")
fuse_mount big_writes big_writes
if [ -n "$FUSE_EXTRA" ]; then
    FUSES+=("extra|$FUSE_EXTRA")
    fuse_mount extra "$FUSE_EXTRA"
fi

# ---- measurements -------------------------------------------------------

# name rw bs qd cache
ROWS=(
    "seqread-4k-warm read 4096 1 warm"
    "seqread-1m-warm read 1048576 1 warm"
    "seqread-4k-cold read 4096 1 cold"
    "seqread-1m-cold read 1048576 1 cold"
    "randread-4k-qd1 randread 4096 1 warm"
    "randread-4k-qd32 randread 4096 32 warm"
    "seqwrite-4k write 4096 1 -"
    "seqwrite-1m write 1048576 1 -"
    "randwrite-4k-qd1 randwrite 4096 1 -"
    "randwrite-4k-qd32 randwrite 4096 32 -"
)

for o in $ONLY; do
    printf '%s\n' "${ROWS[@]}" | grep -q "^$o " || die "ONLY: no row '$o'"
done

mkdir "$TMP/res"
n=0
next_result() { n=$((n + 1)); RESULT=$(printf '%s/%04d.json' "$TMP/res" "$n"); }

# prepare CACHE: the state every run of a row starts from.
prepare() {
    sync
    case $1 in
    warm) cat "$(spool_file)" >/dev/null ;;
    cold) echo 3 > /proc/sys/vm/drop_caches ;;
    esac
}

# record ROW TARGET ROUND KIND JSON: one result file.
record() {
    printf '{"row": "%s", "target": "%s", "round": %s, "loadavg": "%s", "%s": %s}\n' \
        "$1" "$2" "$3" "$(cut -d' ' -f1-3 /proc/loadavg)" "$4" "$5" > "$RESULT"
}

show() { # JSON-FILE: one line for the progress log
    python3 - "$1" <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1]))
if "vmio_bench" in r:
    j = r["vmio_bench"]; mb, iops, p50 = j["mb_per_s"], j["iops"], j["lat_us"]["p50"]
elif "fio" in r:
    job = r["fio"]["jobs"][0]
    s = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
    mb, iops = s["bw_bytes"] / 1e6, s["iops"]
    p50 = (s.get("lat_ns", {}).get("percentile") or s["clat_ns"]["percentile"])["50.000000"] / 1e3
else:
    q = r["qemu"]; iops = q["count"] / q["seconds"]; mb = iops * q["bs"] / 1e6; p50 = None
print("  %-26s %9.1f MB/s %8.0f IOPS%s" % (r["target"], mb, iops,
      "  p50 %7.1f us" % p50 if p50 is not None else ""))
PY
}

LAST_IOPS=0
# run_vb ROW TARGET ROUND URI RW BS QD CACHE EXPECTED-BACKEND
run_vb() {
    local row=$1 target=$2 round=$3 uri=$4 rw=$5 bs=$6 qd=$7 cache=$8 want=$9 out got
    local extra=()
    [ "$rw" != read ] || extra=(--ops $((SIZE_BYTES / bs)))    # one pass at most
    [ "$qd" != 1 ] || extra+=(--sync)    # dd-like: blocking calls, like fio's psync
    next_result
    prepare "$cache"
    out=$("$VMIO_BENCH" storage --json --rw "$rw" --bs "$bs" --qd "$qd" --runtime "$RUNTIME" \
        ${extra[@]+"${extra[@]}"} "$uri" 2>"$TMP/vb.err") ||
        { cat "$TMP/vb.err" >&2; die "vmio-bench failed on $uri ($row)"; }
    got=$(python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print(j["backend"], j["iops"])' "$out")
    [ "${got% *}" = "$want" ] || die "$target: backend '${got% *}', expected '$want' ($uri)"
    LAST_IOPS=${got#* }
    record "$row" "$target" "$round" vmio_bench "$out"
    show "$RESULT"
}

# run_fio ROW TARGET ROUND FILE RW BS QD CACHE DIRECT
run_fio() {
    local row=$1 target=$2 round=$3 file=$4 rw=$5 bs=$6 qd=$7 cache=$8 direct=$9 engine=psync
    local timed=(--time_based)
    [ "$qd" = 1 ] || engine=libaio
    [ "$rw" != read ] || timed=()    # one pass over the image at most
    next_result
    prepare "$cache"
    fio --name="$row" --filename="$file" --ioengine="$engine" --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --direct="$direct" --size="$SIZE_BYTES" --runtime="$RUNTIME" \
        ${timed[@]+"${timed[@]}"} --fallocate=none --lat_percentiles=1 \
        --output-format=json --output="$TMP/fio.json" >/dev/null 2>"$TMP/fio.err" ||
        { cat "$TMP/fio.err" >&2; die "fio failed ($row on $file)"; }
    record "$row" "$target" "$round" fio "$(cat "$TMP/fio.json")"
    show "$RESULT"
}

# run_qemu ROW ROUND RW BS QD CACHE: as many requests as the direct column
# did in RUNTIME (qemu-img bench counts requests, not seconds). Random rows
# use a stride coprime with the number of blocks: every block once per
# pass, in a scattered order (qemu-img bench has no random mode).
run_qemu() {
    local row=$1 round=$2 rw=$3 bs=$4 qd=$5 cache=$6 count step secs args=()
    count=$(awk -v i="$LAST_IOPS" -v t="$RUNTIME" 'BEGIN { c = int(i * t); print (c < 200 ? 200 : c) }')
    [ "$rw" != read ] || [ "$count" -le $((SIZE_BYTES / bs)) ] || count=$((SIZE_BYTES / bs))
    [ "$count" -ge "$qd" ] || count=$qd
    case $rw in
    rand*)
        # (qemu-img bench takes a step of at most INT_MAX bytes.)
        step=$(python3 -c 'import math, sys
n, bs = int(sys.argv[1]), int(sys.argv[2])
s = int(min(n, (2**31 - 1) // bs) * 0.618034) | 1
while math.gcd(s, n) != 1: s -= 2
print(s)' $((SIZE_BYTES / bs)) "$bs")
        args+=(-S $((step * bs)))
        ;;
    esac
    case $rw in *write) args+=(-w --pattern=0x5a) ;; esac
    next_result
    prepare "$cache"
    VMIO_GFARM_HELPER=$QEMU_HELPER "$QEMU_IMG" bench -f raw -c "$count" -d "$qd" -s "$bs" \
        ${args[@]+"${args[@]}"} "$DIRECT_URI" >"$TMP/qemu.out" 2>&1 ||
        { cat "$TMP/qemu.out" >&2; die "qemu-img bench failed ($row)"; }
    secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' "$TMP/qemu.out")
    [ -n "$secs" ] || { cat "$TMP/qemu.out" >&2; die "cannot read qemu-img bench's output"; }
    record "$row" qemu "$round" qemu \
        "{\"count\": $count, \"bs\": $bs, \"qd\": $qd, \"seconds\": $secs, \"step\": ${step:-$bs}}"
    show "$RESULT"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# shellcheck disable=SC2016
GF_VERSION=$(dpkg-query -W -f='${Version}' gfarm-client 2>/dev/null || echo unknown)
# shellcheck disable=SC2016
GF2FS_VERSION=$(dpkg-query -W -f='${Version}' gfarm2fs 2>/dev/null || echo unknown)
T_START=$(date +%s)
say "image $GDIR/$IMG ($SIZE_BYTES bytes), $RUNTIME s per run, $REPEAT round(s)"
say "vmiod on 127.0.0.1:$VMIOD_PORT exporting gfarm://$GDIR; gfarm2fs: ${FUSES[*]}"
for ((round = 1; round <= REPEAT; round++)); do
    [ "$REPEAT" = 1 ] || say "round $round of $REPEAT"
    for r in "${ROWS[@]}"; do
        read -r name rw bs qd cache <<<"$r"
        [ "$cache" != cold ] || [ "$COLD" = 1 ] || continue
        [ -z "$ONLY" ] || [[ " $ONLY " == *" $name "* ]] || continue
        say "$name (load $(cut -d' ' -f1 /proc/loadavg))"
        run_vb "$name" direct "$round" "$DIRECT_URI" "$rw" "$bs" "$qd" "$cache" gfarm
        [ "$QEMU" != 1 ] || run_qemu "$name" "$round" "$rw" "$bs" "$qd" "$cache"
        run_vb "$name" vmiod "$round" "$ROUTED_URI" "$rw" "$bs" "$qd" "$cache" gfarm+vmio
        for f in "${FUSES[@]}"; do
            fname=${f%%|*}
            run_vb "$name" "fuse-$fname:vmio-bench" "$round" "$TMP/mnt-$fname/$IMG" \
                "$rw" "$bs" "$qd" "$cache" file
            if [ "$FIO" = 1 ]; then
                for d in $FIO_DIRECT; do
                    run_fio "$name" "fuse-$fname:fio-direct$d" "$round" "$TMP/mnt-$fname/$IMG" \
                        "$rw" "$bs" "$qd" "$cache" "$d"
                done
            fi
        done
    done
done
ELAPSED=$(( $(date +%s) - T_START ))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
check_load
VMIOD_OPENS=$(grep -c "opened images/$IMG " "$TMP/vmiod.log" || true)

OUT=$(out_file gfarm)
python3 - "$TMP/res" "$OUT" <<PY
import json, math, os, sys

resdir, out = sys.argv[1:3]
settings = {
    "runtime_s": float("$RUNTIME"), "size": int("$SIZE_BYTES"), "repeat": int("$REPEAT"),
    "cold": "$COLD" == "1", "fio": "$FIO" == "1", "fio_direct": "$FIO_DIRECT".split(),
    "gfarm_opts": "$GFARM_OPTS", "fuse": "${FUSES[*]}".split(),
    "direct_uri": "$DIRECT_URI", "qemu": "$QEMU_NOTE" if "$QEMU" == "1" else None,
    "qemu_note": "$QEMU_NOTE", "gfarm": "Gfarm $GF_VERSION, gfarm2fs $GF2FS_VERSION",
    "direct_local_access": "disable", "elapsed_s": int("$ELAPSED"),
    "loadavg_start": "$LOAD_START", "loadavg_end": "$LOAD_END",
    "vmiod_opens": int("${VMIOD_OPENS:-0}"),
}
machine = json.loads('''$(machine_json)''')
runs = []
for name in sorted(os.listdir(resdir)):
    with open(os.path.join(resdir, name)) as f:
        runs.append(json.load(f))

def norm(r):
    if "vmio_bench" in r:
        j = r["vmio_bench"]
        return {"mb_per_s": j["mb_per_s"], "iops": j["iops"], "p50": j["lat_us"]["p50"],
                "p99": j["lat_us"]["p99"], "backend": j["backend"]}
    if "fio" in r:
        job = r["fio"]["jobs"][0]
        s = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
        pct = s.get("lat_ns", {}).get("percentile") or s["clat_ns"]["percentile"]
        return {"mb_per_s": s["bw_bytes"] / 1e6, "iops": s["iops"],
                "p50": pct["50.000000"] / 1e3, "p99": pct["99.000000"] / 1e3}
    q = r["qemu"]
    iops = q["count"] / q["seconds"] if q["seconds"] > 0 else 0
    return {"mb_per_s": iops * q["bs"] / 1e6, "iops": iops, "p50": None, "p99": None}

best = {}          # (row, target) -> normalised best run
spread = {}        # (row, target) -> [MB/s of every round]
loads = []
for r in runs:
    m = norm(r)
    r["norm"] = m
    loads.append(float(r["loadavg"].split()[0]))
    key = (r["row"], r["target"])
    spread.setdefault(key, []).append(m["mb_per_s"])
    if key not in best or m["mb_per_s"] > best[key]["mb_per_s"]:
        best[key] = m

labels = {
    "seqread-4k-warm": "seq read 4K QD1 warm", "seqread-1m-warm": "seq read 1M QD1 warm",
    "seqread-4k-cold": "seq read 4K QD1 cold", "seqread-1m-cold": "seq read 1M QD1 cold",
    "randread-4k-qd1": "rand read 4K QD1", "randread-4k-qd32": "rand read 4K QD32",
    "seqwrite-4k": "seq write 4K QD1", "seqwrite-1m": "seq write 1M QD1",
    "randwrite-4k-qd1": "rand write 4K QD1", "randwrite-4k-qd32": "rand write 4K QD32",
}
order = [k for k in labels if any(r["row"] == k for r in runs)]
fuses = [f.split("|")[0] for f in settings["fuse"]]

def fuse_best(row, fname=None):
    """Best gfarm2fs figure of a row (one mount, or all), and who made it."""
    cand = [(m, t) for (rw, t), m in best.items()
            if rw == row and t.startswith("fuse-") and (fname is None or t.split(":")[0] == "fuse-" + fname)]
    return max(cand, key=lambda c: c[0]["mb_per_s"]) if cand else (None, None)

def mb(m):
    return "%.1f" % m["mb_per_s"] if m else "-"

def ratio(a, b):
    return a["mb_per_s"] / b["mb_per_s"] if a and b and b["mb_per_s"] > 0 else None

def fr(x):
    return "%.2fx" % x if x is not None else "-"

# Cells of the gfarm2fs columns: vmio-bench, then the better fio (d = O_DIRECT).
def fio_cell(row, fname):
    c = [(m, t) for (rw, t), m in best.items() if rw == row and t.startswith("fuse-%s:fio" % fname)]
    if not c:
        return "-"
    m, t = max(c, key=lambda x: x[0]["mb_per_s"])
    return "%.1f%s" % (m["mb_per_s"], "d" if t.endswith("direct1") else "")

cols = ["row", "direct MB/s", "IOPS", "vmiod MB/s", "qemu MB/s"]
for f in fuses:
    cols += ["%s vb" % f, "%s fio" % f]
cols += ["best FUSE", "direct/FUSE", "vmiod/FUSE"]
table = []
summary = []
for row in order:
    d, v, q = best.get((row, "direct")), best.get((row, "vmiod")), best.get((row, "qemu"))
    fb, fbt = fuse_best(row)
    line = [labels[row], mb(d), "%.0f" % d["iops"] if d else "-", mb(v), mb(q)]
    for f in fuses:
        line += [mb(best.get((row, "fuse-%s:vmio-bench" % f))), fio_cell(row, f)]
    line += [mb(fb), fr(ratio(d, fb)), fr(ratio(v, fb))]
    table.append(line)
    summary.append({"row": row, "direct": d, "vmiod": v, "qemu": q, "best_fuse": fb,
                    "best_fuse_by": fbt, "direct_over_fuse": ratio(d, fb),
                    "vmiod_over_fuse": ratio(v, fb), "qemu_over_fuse": ratio(q, fb)})
widths = [max(len(str(x)) for x in col) for col in zip(cols, *table)]
def fmt(cells):
    return " | ".join((str(c).ljust(w) if i == 0 else str(c).rjust(w))
                      for i, (c, w) in enumerate(zip(cells, widths)))

print()
print("libvmio gfarm:// vs gfarm2fs (FUSE) on one private Gfarm (%s): PostgreSQL, gfmd" % settings["gfarm"])
print("and one gfsd on 127.0.0.1, direct_local_access disabled (data always through gfsd")
print("over TCP). Image %d MiB of random data; %g s per run, best of %d round(s); MB/s." % (
    settings["size"] >> 20, settings["runtime_s"], settings["repeat"]))
print("warm = gfsd spool file in the page cache; cold = sync; echo 3 > /proc/sys/vm/drop_caches")
print("before each run (on one machine that drops every cache: gfsd's, the FUSE client's,")
print("gfmd's). Sequential reads: one pass over the image at most (dd-like).")
print("direct = vmio-bench %s (%s); vmiod = vmio-bench gfarm:// routed to a" % (
    settings["direct_uri"], "options " + settings["gfarm_opts"] if settings["gfarm_opts"]
    else "backend defaults: helpers=4, cache=stream"))
print("vmiod exporting the Gfarm directory (backend gfarm+vmio in every run, %d opens in vmiod's log)." % settings["vmiod_opens"])
print("vmio-bench: --sync (blocking calls, dd-like) at QD1, async API at QD32.")
print("qemu = %s." % (settings["qemu_note"] if settings["qemu"] else "not measured: " + settings["qemu_note"]))
print("FUSE columns per gfarm2fs mount (%s): vb = vmio-bench on the mounted file (buffered I/O)," %
      ", ".join("%s: -o %s" % (f.split("|")[0], f.split("|")[1] or "(none)") for f in settings["fuse"]))
if settings["fio"]:
    print("fio = best of fio --direct=%s (psync; libaio for QD32), d = the O_DIRECT run." % "/".join(settings["fio_direct"]))
else:
    print("fio not run.")
print("best FUSE = the best gfarm2fs figure of the row, whichever mount and client.")
print()
print(fmt(cols))
print("-+-".join("-" * w for w in widths))
for line in table:
    print(fmt(line))

print()
lat = [["row", "direct p50/p99 us", "vmiod p50/p99 us", "best FUSE p50/p99 us (by)"]]
for s in summary:
    def pl(m):
        return "%.0f/%.0f" % (m["p50"], m["p99"]) if m and m["p50"] is not None else "-"
    lat.append([labels[s["row"]], pl(s["direct"]), pl(s["vmiod"]),
                "%s (%s)" % (pl(s["best_fuse"]), s["best_fuse_by"] or "-")])
lw = [max(len(x) for x in col) for col in zip(*lat)]
for i, l in enumerate(lat):
    print(" | ".join(c.ljust(w) if j in (0, 3) else c.rjust(w) for j, (c, w) in enumerate(zip(l, lw))))
    if i == 0:
        print("-+-".join("-" * w for w in lw))

if settings["repeat"] > 1:
    print()
    print("spread of the rounds (MB/s): direct | vmiod | best FUSE target")
    for s in summary:
        row = s["row"]
        def sp(t):
            return ", ".join("%.0f" % x for x in spread.get((row, t), [])) or "-"
        print("  %-22s %s | %s | %s" % (labels[row], sp("direct"), sp("vmiod"), sp(s["best_fuse_by"])))

print()
print("targets (ratio = libvmio / best gfarm2fs figure of the row):")
targets = [("seqwrite-4k", "4K sequential write", 5.0)]
for row in ("seqread-4k-warm", "seqread-4k-cold", "seqread-1m-warm", "seqread-1m-cold"):
    targets.append((row, labels[row].replace(" QD1", ""), 1.37))
targets.append(("randread-4k-qd32", "4K random read QD32", 4.0))
verdicts = []
for row, what, goal in targets:
    s = next((x for x in summary if x["row"] == row), None)
    if not s:
        continue
    parts = []
    for who, key in (("direct", "direct_over_fuse"), ("via vmiod", "vmiod_over_fuse")):
        x = s[key]
        ok = x is not None and x >= goal
        parts.append("%s %s %s" % (who, fr(x), "PASS" if ok else "MISS"))
        verdicts.append({"row": row, "client": who, "goal": goal, "ratio": x, "pass": ok})
    print("  %-26s >= %-5s %s" % (what, "%gx" % goal, "   ".join(parts)))

print()
print("load average: %s at the start, %s at the end, %.2f to %.2f at the runs (%d CPUs);" % (
    settings["loadavg_start"], settings["loadavg_end"], min(loads), max(loads), machine["cpus"]))
print("%d runs in %d s." % (len(runs), settings["elapsed_s"]))
for r in runs:
    del r["norm"]
doc = {"benchmark": "gfarm", "settings": settings, "machine": machine, "summary": summary,
       "targets": verdicts, "runs": runs}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
print("raw results: %s" % os.path.relpath(out))
PY
