#!/bin/bash
# scripts/migrate-corpus.sh: build a corpus of real guest memory for the live
# migration benchmarks (bench/migrate.sh, bench/corpus-stats.py).
#
#   scripts/migrate-corpus.sh [--build-dir DIR] [--force] [--mem MB] [--smp N]
#                             [--snaps N] [--interval S] [--timeout S] [WORKLOAD...]
#
# For each workload (default: idle memcached postgres) boots Debian's kernel
# under qemu-system-x86_64 -accel tcg with tests/vm/run.sh, guest RAM backed
# by a file (memory-backend-file, share=on), memcached, PostgreSQL and python3
# on a read-only disk (tests/vm/build.sh with VM_EXTRA_PKGS, cached in
# <build-dir>/vm-extra). The guest (scripts/migrate-corpus-guest.sh) prepares
# the workload:
#   idle       boot, then CORPUS_IDLE_S (20) seconds of nothing
#   memcached  memcached -m 512 loaded with CORPUS_MC_MB (300) MB of JSON-like
#              values by a python3 loader; run phase: 90% gets, 10% sets
#   postgres   initdb in a guest tmpfs, pgbench -i -s CORPUS_PG_SCALE (20);
#              run phase: pgbench -c 2 -j 2
# and then the host stops the guest over QMP, copies the RAM file with
# cp --sparse=always to snap-0.raw, resumes it, starts the run phase, and
# takes snap-1.raw ... snap-N.raw every S seconds of running guest (default:
# one more, 10 s later). Output, in ${VMIO_CORPUS_DIR:-/var/tmp/vmio-corpus}:
#   <workload>/snap-K.raw      the guest's RAM (sparse files, MB bytes each)
#   <workload>/manifest.json   workload, guest RAM, snapshot times, wall times
#   <workload>/console.log     the guest's console
# A workload whose manifest and snapshots exist is skipped unless --force.
# Options: --build-dir (meson build dir, default build), --mem (guest RAM in
# MB, default 1024), --smp (2), --snaps (snapshots after snap-0, default 1),
# --interval (10), --timeout (guest limit per workload in s, default 1500).
# Needs qemu-system-x86_64, python3 (QMP) and what tests/vm/build.sh needs.
set -euo pipefail
export LC_ALL=C

src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build
force=0
mem=1024
smp=2
snaps=1
interval=10
tmo=1500
workloads=()
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) build=$2; shift 2 ;;
    --force) force=1; shift ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --snaps) snaps=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --timeout) tmo=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "migrate-corpus.sh: unknown option: $1" >&2; exit 2 ;;
    *) workloads+=("$1"); shift ;;
    esac
done
[ ${#workloads[@]} -gt 0 ] || workloads=(idle memcached postgres)
for w in "${workloads[@]}"; do
    case $w in idle | memcached | postgres) ;; *) echo "migrate-corpus.sh: unknown workload: $w" >&2; exit 2 ;; esac
done
die() { echo "migrate-corpus.sh: error: $*" >&2; exit 1; }
say() { echo "migrate-corpus.sh: $*"; }
command -v python3 >/dev/null || die "python3 is needed (QMP client)"
build=$(cd "$build" && pwd)
corpus=${VMIO_CORPUS_DIR:-/var/tmp/vmio-corpus}
mkdir -p "$corpus"
corpus=$(cd "$corpus" && pwd)

# The guest's extra root file system: the workloads' programs.
export VM_EXTRA_PKGS="memcached postgresql-15 python3"
# The harness's exclusions minus PAM and libaudit (postgres links them), plus
# what these workloads never use (LLVM for the JIT, locales, the cluster
# wrappers of postgresql-common).
export VM_EXTRA_EXCLUDE='^(perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|cdebconf|debconf|libelogind0|usrmerge|usr-is-merged|adduser|passwd|install-info|dpkg|tar|libsemanage.*|libdebian-installer4|libnewt.*|libslang2|libtextwrap1|udev|init-system-helpers|lsb-base|sysvinit-utils|readline-common|libdb5.3|libgdbm.*|libcap2-bin|libllvm[0-9]+|locales|locales-all|postgresql-common|ssl-cert|ucf|sysstat)$'
vmdir=$build/vm-extra

# A QMP client: qmp SOCKET COMMAND... (each command without arguments).
qmp() {
    python3 - "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
def call(cmd):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r: return r["return"]
        if "error" in r: sys.exit("qmp %s: %s" % (cmd, r["error"]))
json.loads(f.readline())  # greeting
call("qmp_capabilities")
for c in sys.argv[2:]: call(c)
EOF
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# wait_log FILE PATTERN SECS PID: until PATTERN is in FILE (or PID ended)
wait_log() {
    local i=$(($3 * 5))
    while ! grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$4" 2>/dev/null || return 1
        i=$((i - 1))
        [ $i -gt 0 ] || return 1
        sleep 0.2
    done
}

run_workload() { # run_workload NAME
    local w=$1 dir=$corpus/$1 tmp pid t0 tready rc k snapt=() stopt=() stopat=() contat=() info
    tmp=$dir/work
    rm -rf "$tmp" "$dir"/snap-*.raw "$dir/manifest.json"
    mkdir -p "$tmp"
    { echo '#!/bin/sh'
      echo "CORPUS_WORKLOAD=$w"
      for v in CORPUS_MC_MB CORPUS_PG_SCALE CORPUS_IDLE_S; do
          [ -z "${!v:-}" ] || echo "$v=${!v}"
      done
      sed 1d "$src/scripts/migrate-corpus-guest.sh"; } >"$tmp/corpus-$w.sh"
    say "$w: booting the guest (${mem} MB RAM, $smp CPUs, TCG)"
    t0=$(now)
    bash "$src/tests/vm/run.sh" --build-dir "$build" --vm-dir "$vmdir" --mem "$mem" --smp "$smp" \
        --timeout "$tmo" --mem-path "$tmp/ram" --qmp "$tmp/qmp.sock" --disk "$vmdir/extra.img" \
        --script "$tmp/corpus-$w.sh" --out-dir "$tmp/out" --no-rebuild >"$tmp/run.log" 2>&1 &
    pid=$!
    # console.log is created by run.sh once build.sh is done.
    wait_log "$tmp/out/console.log" '^@@CORPUS-READY' "$tmo" $pid ||
        { wait $pid || true; tail -30 "$tmp/run.log" >&2; die "$w: the guest did not get ready"; }
    tready=$(elapsed "$t0")
    say "$w: ready after ${tready}s; snapshot 0"
    snap() { # snap K
        local t1 t2
        t1=$(now)
        qmp "$tmp/qmp.sock" stop
        snapt+=("$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)")
        cp --sparse=always "$tmp/ram" "$dir/snap-$1.raw.tmp"
        qmp "$tmp/qmp.sock" cont
        mv "$dir/snap-$1.raw.tmp" "$dir/snap-$1.raw"
        t2=$(now)
        stopt+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')")
        stopat+=("$t1")
        contat+=("$t2")
    }
    snap 0
    qmp "$tmp/qmp.sock" inject-nmi
    wait_log "$tmp/out/console.log" '^@@CORPUS-RUNNING' 120 $pid ||
        { wait $pid || true; tail -30 "$tmp/run.log" >&2; die "$w: the run phase did not start"; }
    for k in $(seq 1 "$snaps"); do
        sleep "$interval"
        say "$w: snapshot $k (${interval}s of running guest later)"
        snap "$k"
    done
    qmp "$tmp/qmp.sock" inject-nmi
    rc=0
    wait $pid || rc=$?
    cp "$tmp/out/console.log" "$dir/console.log"
    grep -E '^(run.sh: [0-9]+ script|[0-9]+ passed|FAILED)' "$tmp/run.log" | sed "s/^/migrate-corpus.sh: $w: /"
    [ $rc -eq 0 ] || { rm -f "$dir"/snap-*.raw; die "$w: the guest run failed (see $dir/console.log)"; }
    info=$(sed -n 's/^@@CORPUS-INFO //p' "$tmp/out/console.log" | tr -d '\r')
    python3 - "$dir/manifest.json" "$w" "$mem" "$smp" "$interval" "$tready" "$(elapsed "$t0")" \
        "$(qemu-system-x86_64 --version | head -1)" "$(ls "$vmdir"/kernel/lib/modules)" \
        "${snapt[*]}" "${stopt[*]}" "${stopat[*]}" "${contat[*]}" "$info" <<'EOF'
import json, sys
(out, w, mem, smp, interval, tready, ttotal, qemu, kernel, snapt, stopt, stopat, contat, info) = sys.argv[1:]
stopat, contat = [float(x) for x in stopat.split()], [float(x) for x in contat.split()]
# Seconds the guest ran between resuming after snapshot 0 and stopping for K.
snaps = [{"file": "snap-%d.raw" % i, "taken_utc": t, "running_s_after_snap_0":
          round(stopat[i] - contat[0], 1) if i else 0.0, "stopped_s": float(s)}
         for i, (t, s) in enumerate(zip(snapt.split(), stopt.split()))]
m = {"workload": w, "guest_ram_mib": int(mem), "guest_cpus": int(smp), "page_size": 4096,
     "accel": "tcg", "qemu": qemu, "guest_kernel": kernel, "snapshots": snaps,
     "wall_s": {"boot_and_prepare": float(tready), "total": float(ttotal)},
     "guest_info": [l for l in info.splitlines() if l]}
json.dump(m, open(out, "w"), indent=1)
EOF
    rm -rf "$tmp"
    say "$w: done in $(elapsed "$t0")s (ready after ${tready}s): $dir"
}

# The guest's kernel, initramfs and extra disk (cached). The workloads do
# not use the project: a build dir that does not build right now still does.
ninja -j2 -C "$build" >/dev/null 2>&1 || say "warning: ninja -C $build failed; using what is built"
bash "$src/tests/vm/build.sh" --build-dir "$build" --out "$vmdir" --no-rebuild | grep -v '^build.sh: ready' || true
[ -s "$vmdir/extra.img" ] || die "tests/vm/build.sh did not produce $vmdir/extra.img"
for w in "${workloads[@]}"; do
    if [ $force = 0 ] && [ -s "$corpus/$w/manifest.json" ] && [ -s "$corpus/$w/snap-0.raw" ] &&
        [ -s "$corpus/$w/snap-$snaps.raw" ]; then
        say "$w: cached in $corpus/$w (--force to rebuild)"
        continue
    fi
    run_workload "$w"
done
ls -ls "$corpus"/*/snap-*.raw
