#!/usr/bin/env bash
# bench/migrate.sh: live migration codecs on real guest memory. For every
# workload of the corpus (scripts/migrate-corpus.sh: idle, memcached,
# postgres; snap-0.raw = round 0, later snapshots = later rounds) it runs
#   - `vmio-migrate bench --json` at each emulated link rate (LINKS) with
#     every mode (raw, zero, delta, dedup, zstd, lz4, adaptive),
#   - the anchors `zstd -1 -T1` and `lz4 -1` (command-line tools, one core)
#     on each snapshot: ratio and MB/s compressing and decompressing,
#   - bench/corpus-stats.py: zero, duplicate and unchanged pages,
# prints one table with the ratios against raw and whether the targets of
# the live migration issue are met, and keeps everything as JSON in
# bench/out/migrate-<date>.json.
#
#   bench/migrate.sh [WORKLOAD...]
#
# Environment (besides bench/lib.sh's BUILD_DIR and TMPDIR):
#   VMIO_CORPUS_DIR  the corpus (default /var/tmp/vmio-corpus); workloads
#                    missing there are built with scripts/migrate-corpus.sh
#                    (minutes each, under QEMU TCG) unless CORPUS=existing
#   VMIO_MIGRATE     the CLI (default $BUILD_DIR/cli/vmio-migrate, built
#                    with ninja); without it only the anchors and the
#                    corpus statistics are measured
#   LINKS            emulated link rates (default "1gbit 10gbit")
#   THREADS          --threads for vmio-migrate (default: all CPUs)
#   ANCHORS=0        skip zstd and lz4
source "$(dirname "$0")/lib.sh"

CORPUS_DIR=${VMIO_CORPUS_DIR:-/var/tmp/vmio-corpus}
CORPUS=${CORPUS:-build}
LINKS=${LINKS:-1gbit 10gbit}
THREADS=${THREADS:-$(nproc)}
ANCHORS=${ANCHORS:-1}
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=(idle memcached postgres)
require_cmd python3
[ "$ANCHORS" = 0 ] || require_cmd zstd lz4

# ---- the CLI ------------------------------------------------------------------
if [ -z "${VMIO_MIGRATE:-}" ]; then
    if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        say "setting up $BUILD_DIR (release build)"
        meson setup "$BUILD_DIR" --buildtype=release -Dtests=disabled -Dman=disabled >/dev/null
    fi
    ninja -j2 -C "$BUILD_DIR" cli/vmio-migrate >/dev/null 2>&1 ||
        say "note: cannot build cli/vmio-migrate in $BUILD_DIR (not there yet?)"
    VMIO_MIGRATE=$BENCH_ROOT/$BUILD_DIR/cli/vmio-migrate
fi
[ -x "$VMIO_MIGRATE" ] || { say "note: no $VMIO_MIGRATE: anchors and corpus statistics only"; VMIO_MIGRATE=; }
check_load

# ---- the corpus -----------------------------------------------------------------
missing=()
for w in "${WORKLOADS[@]}"; do
    [ -s "$CORPUS_DIR/$w/snap-0.raw" ] || missing+=("$w")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$CORPUS" != existing ] || die "no snapshots for: ${missing[*]} in $CORPUS_DIR (scripts/migrate-corpus.sh)"
    say "building the corpus for: ${missing[*]} (scripts/migrate-corpus.sh, QEMU TCG: minutes each)"
    VMIO_CORPUS_DIR=$CORPUS_DIR scripts/migrate-corpus.sh --build-dir "$BUILD_DIR" "${missing[@]}" >&2 ||
        die "scripts/migrate-corpus.sh failed"
fi
snaps_of() { printf "%s\n" "$CORPUS_DIR/$1"/snap-*.raw | sort -V; }

R=$TMP/results.jsonl
: >"$R"
# tag JSON-LINES-FILE KEY=VALUE...: copy the lines into $R with extra fields
tag() {
    python3 - "$@" >>"$R" <<'PY'
import json, sys
extra = dict(a.split("=", 1) for a in sys.argv[2:])
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        o = json.loads(line)
        o.update(extra)
        print(json.dumps(o))
PY
}

for w in "${WORKLOADS[@]}"; do
    mapfile -t snaps < <(snaps_of "$w")
    say "$w: ${#snaps[@]} snapshot(s): corpus statistics"
    bench/corpus-stats.py --json "${snaps[@]}" >"$TMP/stats.jsonl" || die "corpus-stats.py failed"
    tag "$TMP/stats.jsonl" kind=stats workload="$w"

    if [ "$ANCHORS" != 0 ]; then
        # One core each, file in the page cache, output counted (not stored)
        # when compressing and decompressed from a stored copy.
        for s in "${snaps[@]}"; do
            cat "$s" >/dev/null
            for tool in zstd lz4; do
                t0=$(now_ns)
                if [ $tool = zstd ]; then zstd -1 -T1 -q -c "$s" >"$TMP/c"; else lz4 -1 -q -c "$s" >"$TMP/c"; fi
                t1=$(now_ns)
                $tool -d -q -c "$TMP/c" >/dev/null
                t2=$(now_ns)
                printf '{"kind":"anchor","workload":"%s","snapshot":"%s","tool":"%s -1","raw_bytes":%d,"wire_bytes":%d,"encode_s":%s,"decode_s":%s}\n' \
                    "$w" "$(basename "$s")" $tool "$(stat -c %s "$s")" "$(stat -c %s "$TMP/c")" \
                    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')" \
                    "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print (b - a) / 1e9 }')" >>"$R"
                rm -f "$TMP/c"
            done
        done
        say "$w: anchors done"
    fi

    [ -n "$VMIO_MIGRATE" ] || continue
    for link in $LINKS; do
        say "$w: vmio-migrate bench --link $link --threads $THREADS"
        if "$VMIO_MIGRATE" bench --link "$link" --threads "$THREADS" --json "${snaps[@]}" \
            >"$TMP/cli.jsonl" 2>"$TMP/cli.err"; then
            tag "$TMP/cli.jsonl" kind=cli workload="$w" link="$link"
        else
            say "$w: vmio-migrate bench --link $link failed:"
            sed 's/^/    /' "$TMP/cli.err" >&2
            printf '{"kind":"cli-error","workload":"%s","link":"%s"}\n' "$w" "$link" >>"$R"
        fi
    done
done

out=$(out_file migrate)
python3 - "$R" "$out" "$(machine_json)" "$THREADS" "$LINKS" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, machine, threads = sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
MB = 1e6

def bps(link):  # 1gbit, 10gbit, 2.5gbit, 100mbit, or bits per second
    m = re.fullmatch(r"([0-9.]+)([kmg]?)(bit)?", link.lower())
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] if m else None
links = [(l, bps(l)) for l in sys.argv[5].split() if bps(l)]

print("\n== Corpus (bench/corpus-stats.py)")
print("%-10s %-11s %7s %8s %12s %10s %11s" % ("workload", "snapshot", "zero", "dup/all", "dup/nonzero",
                                                "unchanged", "delta B/pg"))
pairs = {(r["workload"], r["to"].rsplit("/", 1)[-1]): r for r in rows
         if r["kind"] == "stats" and "unchanged_frac" in r}
for r in rows:
    if r["kind"] == "stats" and "zero_frac" in r:
        snap = r["file"].rsplit("/", 1)[-1]
        p = pairs.get((r["workload"], snap))
        print("%-10s %-11s %6.1f%% %7.1f%% %11.1f%% %10s %11s" % (
            r["workload"], snap, 100 * r["zero_frac"], 100 * r["dup_frac"], 100 * r["dup_frac_of_nonzero"],
            "%.1f%%" % (100 * p["unchanged_frac"]) if p else "-",
            "%.0f" % p["delta_bytes_per_changed_page"] if p else "-"))

anchors = [r for r in rows if r["kind"] == "anchor"]
if anchors:
    print("\n== Anchors: command-line tools, one core (ratio = raw/compressed; x raw = raw time on")
    print("   the link / max(compress, decompress, compressed bytes on the link): an estimate for a")
    print("   tool pipelined with the link, the whole snapshot sent)")
    print("%-10s %-11s %-8s %8s %12s %12s" % ("workload", "snapshot", "tool", "ratio", "comp MB/s", "decomp MB/s")
          + "".join(" %13s" % ("x raw " + l) for l, _ in links))
    for r in anchors:
        est = []
        for l, b in links:
            t = max(r["encode_s"], r["decode_s"], r["wire_bytes"] * 8 / b)
            est.append(r["raw_bytes"] * 8 / b / t)
            r["x_raw_est_" + l] = est[-1]
        print("%-10s %-11s %-8s %7.2fx %12.0f %12.0f" % (
            r["workload"], r["snapshot"], r["tool"], r["raw_bytes"] / max(r["wire_bytes"], 1),
            r["raw_bytes"] / MB / r["encode_s"], r["raw_bytes"] / MB / r["decode_s"])
            + "".join(" %12.2fx" % e for e in est))

cli = [r for r in rows if r["kind"] == "cli"]
for r in rows:
    if r["kind"] == "cli-error":
        print("\nvmio-migrate bench failed for %s at %s" % (r["workload"], r["link"]))
targets = []
if cli:
    print("\n== vmio-migrate bench, %d threads (ratio = raw bytes / wire bytes; x = raw mode's time /"
          % threads)
    print("   this mode's time on the same link; later = every round after round 0, summed)")
    print("%-10s %-7s %-9s %8s %7s %7s %8s %7s %7s %9s %7s %6s %6s" % (
        "workload", "link", "mode", "r0 MB", "ratio", "x", "later MB", "ratio", "x",
        "total s", "x", "enc", "dec"))
    print("%-10s %-7s %-9s %8s %7s %7s %8s %7s %7s %9s %7s %6s %6s" % (
        "", "", "", "wire", "", "", "wire", "", "", "", "", "GB/s", "GB/s"))
    raw = {(r["workload"], r["link"], str(r["round"])): r for r in cli if r["mode"] == "raw"}
    for r in cli:
        base = raw.get((r["workload"], r["link"], str(r["round"])))
        r["x_raw"] = base["time_s"] / r["time_s"] if base and r.get("time_s") else None
    def agg(rs):
        return {k: sum(r[k] for r in rs) for k in ("raw_bytes", "wire_bytes", "time_s")} if rs else None
    keys = []
    for r in cli:
        k = (r["workload"], r["link"], r["mode"])
        if k not in keys:
            keys.append(k)
    def fx(a, b):
        return "%.2fx" % (a / b) if a is not None and b else "-"
    for w, link, mode in keys:
        mine = [r for r in cli if (r["workload"], r["link"], r["mode"]) == (w, link, mode)]
        raws = [r for r in cli if (r["workload"], r["link"], r["mode"]) == (w, link, "raw")]
        r0 = [r for r in mine if str(r["round"]) == "0"]
        r0raw = [r for r in raws if str(r["round"]) == "0"]
        lt = agg([r for r in mine if str(r["round"]) not in ("0", "total")])
        ltraw = agg([r for r in raws if str(r["round"]) not in ("0", "total")])
        tot = [r for r in mine if str(r["round"]) == "total"]
        totraw = [r for r in raws if str(r["round"]) == "total"]
        t = tot[0] if tot else {}
        print("%-10s %-7s %-9s %8s %7s %7s %8s %7s %7s %9s %7s %6s %6s" % (
            w, link, mode,
            "%.1f" % (r0[0]["wire_bytes"] / MB) if r0 else "-",
            fx(r0[0]["raw_bytes"], r0[0]["wire_bytes"]) if r0 else "-",
            fx(r0raw[0]["time_s"], r0[0]["time_s"]) if r0 and r0raw else "-",
            "%.1f" % (lt["wire_bytes"] / MB) if lt else "-",
            fx(lt["raw_bytes"], lt["wire_bytes"]) if lt else "-",
            fx(ltraw["time_s"], lt["time_s"]) if lt and ltraw else "-",
            "%.3f" % t["time_s"] if t else "-",
            fx(totraw[0]["time_s"], t["time_s"]) if t and totraw else "-",
            "%.2f" % t["encode_gbps_core"] if t.get("encode_gbps_core") is not None else "-",
            "%.2f" % t["decode_gbps_core"] if t.get("decode_gbps_core") is not None else "-"))

    def x(w, link, rnd, mode="adaptive"):
        for r in cli:
            if (r["workload"], r["link"], str(r["round"]), r["mode"]) == (w, link, rnd, mode):
                return r["x_raw"]
        return None
    def xnom(w, link, rnd, mode="adaptive"):  # against raw bytes at the nominal link rate
        for r in cli:
            if (r["workload"], r["link"], str(r["round"]), r["mode"]) == (w, link, rnd, mode):
                return r["raw_bytes"] * 8 / r["link_bps"] / r["time_s"] if r.get("link_bps") and r["time_s"] else None
        return None
    for w, need in (("idle", 10), ("memcached", 3.5), ("postgres", 8)):
        targets.append(("1gbit: round 0 of %s >= %gx shorter than raw" % (w, need), x(w, "1gbit", "0"), need,
                        xnom(w, "1gbit", "0")))
    targets.append(("10gbit: round 0 of idle >= 2x shorter than raw", x("idle", "10gbit", "0"), 2,
                    xnom("idle", "10gbit", "0")))
    for w in ("idle", "memcached", "postgres"):
        # every round that moved at least 1 MiB, and the whole migration
        for rnd in sorted({str(r["round"]) for r in cli if r["workload"] == w and r["link"] == "10gbit"
                           and r["mode"] == "raw" and r["raw_bytes"] >= 1 << 20}):
            targets.append(("10gbit: %s round %s not slower than raw" % (w, rnd), x(w, "10gbit", rnd), 1,
                            xnom(w, "10gbit", rnd)))
    print("\n== Targets (mode adaptive; x = measured raw time / adaptive time, decides; nominal = raw")
    print("   bytes at the nominal link rate / adaptive time, for when raw does not reach the link rate)")
    print("%-52s %8s %8s" % ("target", "x", "nominal"))
    for name, got, need, nom in targets:
        state = "no data" if got is None else ("MET" if got >= need else "NOT MET")
        print("%-52s %8s %8s  %s" % (name, "-" if got is None else "%.2fx" % got,
                                     "-" if nom is None else "%.2fx" % nom, state))
else:
    print("\n(no vmio-migrate results: the targets cannot be checked)")

json.dump({"machine": machine, "threads": threads, "results": rows,
           "targets": [{"target": n, "x_raw": g, "x_nominal": nm, "need": k, "met": g is not None and g >= k}
                       for n, g, k, nm in targets]}, open(out, "w"), indent=1)
print("\nraw results: %s" % out)
PY
