# shellcheck shell=bash
# Shared helpers of the bench/*.sh scripts (sourced, not run): building the
# tools, a scratch directory removed on exit, starting vmiod and nbdkit on
# loopback, CPU accounting of the servers, JSON output under bench/out/.
#
# Environment:
#   BUILD_DIR   meson build directory to use (default build-bench, set up
#               with --buildtype=release when missing)
#   TMPDIR      where the scratch directory goes (default /tmp)

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$BENCH_ROOT"
BUILD_DIR=${BUILD_DIR:-build-bench}
OUT_DIR=$BENCH_ROOT/bench/out

say() { printf '%s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

require_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' is required (see scripts/install-deps.sh)"
    done
}

# Build only the tools the benchmarks run. Sets VMIO_CP, VMIO_BENCH, VMIOD
# for the scripts.
# shellcheck disable=SC2034
bench_build() {
    if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        say "setting up $BUILD_DIR (release build)"
        meson setup "$BUILD_DIR" --buildtype=release -Dtests=disabled -Dman=disabled >/dev/null
    fi
    ninja -C "$BUILD_DIR" cli/vmio-cp cli/vmio-bench cli/vmiod >/dev/null ||
        die "build failed (ninja -C $BUILD_DIR)"
    VMIO_CP=$BENCH_ROOT/$BUILD_DIR/cli/vmio-cp
    VMIO_BENCH=$BENCH_ROOT/$BUILD_DIR/cli/vmio-bench
    VMIOD=$BENCH_ROOT/$BUILD_DIR/cli/vmiod
    check_load
}

# The storage scripts' start: tools, build, placement. From PLACEMENT
# (free: the scheduler places everything; split: servers on CPU 0, the
# client on CPU 1; same: everything on CPU 0) sets SRV_CPUS (the servers'
# CPUs, empty when free) and CLI (the client's command prefix).
# shellcheck disable=SC2034
storage_prepare() {
    require_cmd meson ninja nbdkit python3 head taskset
    case $PLACEMENT in
    free) SRV_CPUS=; CLI=() ;;
    split) SRV_CPUS=0; CLI=(taskset -c 1) ;;
    same) SRV_CPUS=0; CLI=(taskset -c 0) ;;
    *) die "PLACEMENT must be free, split or same" ;;
    esac
    bench_build
    "$VMIO_BENCH" --help | grep -q "libnbd targets: built in" ||
        die "vmio-bench was built without libnbd (install libnbd-dev and rebuild)"
}

# Benchmarks on a busy machine measure the other load: say so.
check_load() {
    local load cpus
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpus=$(nproc)
    if awk -v l="$load" -v c="$cpus" 'BEGIN { exit !(l > c / 4) }'; then
        say "WARNING: load average $load on $cpus CPUs: other work will skew the numbers"
    fi
}

# ---- scratch directory and child processes ----------------------------

BENCH_PIDS=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmio-bench.XXXXXX")

bench_cleanup() {
    local p
    for p in "${BENCH_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${BENCH_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

wait_for_file() { # SECONDS FILE
    local i=0
    while [ ! -s "$2" ]; do
        [ "$i" -lt $(( $1 * 20 )) ] || return 1
        sleep 0.05
        i=$((i + 1))
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_vmiod NAME DIR: export DIR as NAME on 127.0.0.1, sets VMIOD_PORT,
# VMIOD_PID, VMIOD_LOG ($TMP/vmiod.log for the first vmiod of a run,
# vmiod-N.log for the Nth), VMIO_SECRET_FILE (exported for the clients).
VMIOD_N=0
# shellcheck disable=SC2034
start_vmiod() {
    local name=$1 dir=$2
    # One secret for every vmiod of a run (scripts may start several).
    [ -s "$TMP/secret" ] ||
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/secret")
    VMIOD_N=$((VMIOD_N + 1))
    VMIOD_LOG=$TMP/vmiod.log
    [ "$VMIOD_N" = 1 ] || VMIOD_LOG=$TMP/vmiod-$VMIOD_N.log
    rm -f "$TMP/vmiod.port"
    # shellcheck disable=SC2086 # VMIOD_ARGS: extra options, split on spaces
    "$VMIOD" --listen 127.0.0.1:0 --export "$name=$dir" --secret-file "$TMP/secret" ${VMIOD_ARGS:-} \
        --foreground --port-file "$TMP/vmiod.port" 2>"$VMIOD_LOG" &
    VMIOD_PID=$!
    BENCH_PIDS+=("$VMIOD_PID")
    wait_for_file 10 "$TMP/vmiod.port" || { cat "$VMIOD_LOG" >&2; die "vmiod did not start"; }
    VMIOD_PORT=$(cat "$TMP/vmiod.port")
    export VMIO_SECRET_FILE=$TMP/secret
}

# start_nbdkit FILE [NBDKIT-ARGS...]: nbdkit's file plugin on 127.0.0.1,
# sets NBDKIT_PORT, NBDKIT_PID.
start_nbdkit() {
    local file=$1
    shift
    NBDKIT_PORT=$(free_port)
    rm -f "$TMP/nbdkit.pid"
    nbdkit -f --exit-with-parent -i 127.0.0.1 -p "$NBDKIT_PORT" -P "$TMP/nbdkit.pid" "$@" \
        file "$file" 2>"$TMP/nbdkit.log" &
    NBDKIT_PID=$!
    BENCH_PIDS+=("$NBDKIT_PID")
    wait_for_file 10 "$TMP/nbdkit.pid" || { cat "$TMP/nbdkit.log" >&2; die "nbdkit did not start"; }
}

# CPU seconds (user + system) a server has used so far; dies when it is
# gone (its log is in $TMP).
cpu_seconds_of() {
    [ -r "/proc/$1/stat" ] || {
        cat "$TMP"/*.log >&2 2>/dev/null || true
        die "server process $1 is gone"
    }
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

now_ns() { date +%s%N; }

# Describe the machine, as a JSON object.
machine_json() {
    python3 - "$TMP" <<'PY'
import json, os, platform, subprocess, sys
def cmd(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return ""
model = ""
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
fs = cmd("findmnt", "-n", "-o", "FSTYPE", "-T", sys.argv[1])
print(json.dumps({
    "cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
    "loadavg": os.getloadavg(),
    "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "scratch_fs": fs,
    "nbdkit": cmd("nbdkit", "--version"), "qemu_img": cmd("qemu-img", "--version"),
    "nbdcopy": cmd("nbdcopy", "--version"), "fio": cmd("fio", "--version"),
}))
PY
}

# out_file NAME: a fresh path under bench/out/ for raw results.
out_file() {
    mkdir -p "$OUT_DIR"
    printf '%s/%s-%s.json\n' "$OUT_DIR" "$1" "$(date +%Y%m%d-%H%M%S)"
}
