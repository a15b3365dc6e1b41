# Shared by the integration tests (sourced, bash). Each test gets a private
# temporary directory and a cleanup trap that kills every process the test
# started and removes what it created. Binaries come from the build tree
# through the environment set in tests/integration/meson.build.
#
# Exit codes follow the test protocol: 0 pass, 1 fail, 77 skip.

set -eu
set -o pipefail

: "${VMIOD:?VMIOD must point at the built vmiod}"
: "${VMIO_CP:?VMIO_CP must point at the built vmio-cp}"

TEST_NAME=$(basename "$0" .sh)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmio-$TEST_NAME.XXXXXX")
_pids=()
_cleanups=()

_cleanup() {
    local rc=$?
    local p c
    for p in "${_pids[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    for p in "${_pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    for c in "${_cleanups[@]}"; do
        eval "$c" || true
    done
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        # Show the server logs of a failed test.
        for f in "$TMP"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $(basename "$f")"
            tail -n 30 "$f"
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# Run a command on exit (after the started processes are killed).
on_exit() { _cleanups+=("$*"); }
# Remember a pid to kill on exit; forget it once it is reaped.
track_pid() { _pids+=("$1"); }
untrack_pid() {
    local keep=() p
    for p in "${_pids[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    _pids=("${keep[@]}")
}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

require_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
    done
}

# wait_until SECONDS CMD...: poll CMD every 0.05 s; non-zero on timeout.
wait_until() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# make_secret FILE: a random shared secret readable by its owner only.
make_secret() {
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1")
    chmod 0600 "$1"
}

# make_image FILE MIB: an image of MIB MiB with random data at a few
# places and holes in between (the tail is a hole).
make_image() {
    local f=$1 mib=$2 at
    rm -f "$f"
    truncate -s "${mib}M" "$f"
    for at in 0 $(( mib / 4 )) $(( mib / 2 )); do
        [ "$at" -lt "$mib" ] || continue
        head -c 1M /dev/urandom | dd of="$f" bs=1M seek="$at" conv=notrunc status=none
    done
    # A block of zeroes written as data: the copy may keep it sparse.
    dd if=/dev/zero of="$f" bs=64K count=1 seek=$(( mib * 16 / 8 + 1 )) conv=notrunc status=none
}

# make_dense FILE MIB: MIB MiB of random data, no holes.
make_dense() {
    head -c "$(( $2 * 1048576 ))" /dev/urandom > "$1"
}

allocated() { du -B1 "$1" | cut -f1; }
# grown_past FILE BYTES: FILE exists and has more than BYTES allocated.
grown_past() {
    local a
    a=$(du -B1 "$1" 2>/dev/null | cut -f1)
    [ "${a:-0}" -gt "$2" ]
}

# start_vmiod NAME [vmiod args...]: start vmiod in the foreground on an
# ephemeral loopback port (unless args give --listen), wait until it
# listens. Sets VMIOD_PID and VMIOD_PORT. The log is $TMP/NAME.log.
# VMIOD_WRAP (an array) prefixes the command, e.g. (ip netns exec ns).
VMIOD_WRAP=()
start_vmiod() {
    local name=$1
    shift
    local listen=(--listen 127.0.0.1:0)
    local a
    for a in "$@"; do
        [ "$a" != --listen ] || listen=()
    done
    rm -f "$TMP/$name.port"
    "${VMIOD_WRAP[@]}" "$VMIOD" "${listen[@]}" --port-file "$TMP/$name.port" --foreground \
        "$@" >"$TMP/$name.log" 2>&1 &
    VMIOD_PID=$!
    track_pid "$VMIOD_PID"
    if ! wait_until 20 test -s "$TMP/$name.port"; then
        cat "$TMP/$name.log" >&2
        fail "vmiod $name did not start listening"
    fi
    if ! kill -0 "$VMIOD_PID" 2>/dev/null; then
        cat "$TMP/$name.log" >&2
        fail "vmiod $name exited"
    fi
    VMIOD_PORT=$(cat "$TMP/$name.port")
    case $VMIOD_PORT in
    ''|*[!0-9]*) fail "vmiod $name wrote a bad port file: '$VMIOD_PORT'" ;;
    esac
}

# stop_pid PID [SECONDS]: SIGTERM, wait for the exit; returns its status
# (fails the test if it does not exit in time).
stop_pid() {
    local pid=$1 secs=${2:-10} rc=0
    kill -TERM "$pid" 2>/dev/null || return 0
    wait_until "$secs" exited "$pid" || fail "pid $pid ignored SIGTERM"
    wait "$pid" 2>/dev/null || rc=$?
    untrack_pid "$pid"
    return "$rc"
}

# exited PID: the process is gone or a zombie waiting to be reaped.
exited() {
    ! kill -0 "$1" 2>/dev/null || [ "$(ps -o stat= -p "$1" | cut -c1)" = Z ]
}

# wait_exit PID SECONDS: wait for a child to exit and set WAIT_RC to its
# status; fails the test (showing the logs) if it is still running then.
wait_exit() {
    local pid=$1 secs=$2
    if ! wait_until "$secs" exited "$pid"; then
        for f in "$TMP"/*.out; do
            [ -f "$f" ] || continue
            echo "---- $(basename "$f")"
            tail -n 20 "$f"
        done
        fail "pid $pid still running after $secs s"
    fi
    WAIT_RC=0
    wait "$pid" 2>/dev/null || WAIT_RC=$?
    untrack_pid "$pid"
}

# expect CODE REGEX CMD...: run CMD, assert its exit status is CODE and its
# output (stdout+stderr) matches the extended regex REGEX.
expect() {
    local code=$1 re=$2 rc=0 out
    shift 2
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne "$code" ]; then
        printf '%s\n' "$out" >&2
        fail "'$*' exited $rc, expected $code"
    fi
    if ! printf '%s\n' "$out" | grep -Eq -- "$re"; then
        printf '%s\n' "$out" >&2
        fail "output of '$*' does not match /$re/"
    fi
    ok "exit $rc, /$re/: $*"
}

# Under AddressSanitizer, programs that dlopen an instrumented library
# (nbdkit loading the plugin) need the runtime preloaded.
asan_preload() {
    case ${VMIO_SANITIZE:-none} in
    *address*)
        local lib
        lib=$(${CC:-cc} -print-file-name=libasan.so)  # CC may be "ccache cc"
        [ -f "$lib" ] || skip "libasan.so not found for the sanitized plugin"
        echo "$lib"
        ;;
    esac
}
