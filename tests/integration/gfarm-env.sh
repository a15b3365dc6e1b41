# shellcheck shell=bash
# A real Gfarm file system for the gfarm:// tests (sourced, bash), after
# functions.sh or on its own. It runs scripts/gfarm-local.sh: PostgreSQL,
# gfmd and two gfsd on loopback, private configuration, no systemd.
#
#   gfarm_up [--one]
#       Make sure a Gfarm is running for this test (--one: one gfsd is
#       enough) and export:
#         GFARM_CONFIG_FILE   the instance's gfarm2.conf (clients and libgfarm)
#         GFARM_BASE          its base directory (logs in $GFARM_BASE/log)
#         GF_HOST1 GF_PORT1   file system node 1 ("localhost", 127.0.0.1)
#         GF_HOST2 GF_PORT2   file system node 2 ("127.0.0.2"; may be empty
#                             with --one)
#         GF_GFMD_PORT        the metadata server's port (host 127.0.0.1)
#         GF_DIR              a Gfarm directory of this test's own (/vmio-test-NAME-PID)
#       Without VMIO_TEST_GFARM_BASE a new instance is created under $TMP
#       (free ports chosen automatically) and is stopped and removed at exit.
#       With VMIO_TEST_GFARM_BASE=DIR the instance there is used, started
#       first if it is stopped or does not exist yet; it is left running (who
#       set the variable stops it: scripts/gfarm-local.sh stop purge, with
#       GFARM_BASE=DIR); only GF_DIR is removed at exit. Tests sharing one
#       instance therefore only ever touch their own GF_DIR.
#       Skips (exit 77) only when the Gfarm or PostgreSQL packages are not
#       installed; any other failure to start fails the test.
#   gf_mount DIR [gfarm2fs options...]
#       Mount GF_DIR with gfarm2fs on DIR (created); unmounted at exit.
#   gf_unmount DIR
#   gf_fail MESSAGE
#       Fail the test after printing the end of every Gfarm daemon log.
#
# Exit-time order: unmount what gf_mount mounted, remove GF_DIR, then (own
# instance only) stop the daemons; all before $TMP is removed.

_GF_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GFARM_LOCAL=${VMIO_GFARM_LOCAL:-$_GF_DIR_HERE/../../scripts/gfarm-local.sh}

# Standalone use (not under functions.sh): the few helpers used here.
if ! declare -F on_exit >/dev/null; then
    set -eu
    set -o pipefail
    TEST_NAME=$(basename "$0" .sh)
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmio-$TEST_NAME.XXXXXX")
    _cleanups=()
    _gf_standalone_cleanup() {
        local rc=$? c
        for c in ${_cleanups[@]+"${_cleanups[@]}"}; do
            eval "$c" || true
        done
        rm -rf "$TMP"
        exit "$rc"
    }
    trap _gf_standalone_cleanup EXIT
    trap 'exit 130' INT TERM
    on_exit() { _cleanups+=("$*"); }
    skip() { echo "SKIP: $*"; exit 77; }
    fail() { echo "FAIL: $*" >&2; exit 1; }
    ok() { echo "ok: $*"; }
fi

_gf_mounts=()
_gf_own=0
_gf_cleanup_registered=0

gf_logs() {
    local f
    for f in "${GFARM_BASE:-/nonexistent}"/log/{gfmd,gfsd1,gfsd2,postgresql}.log; do
        [ -s "$f" ] || continue
        echo "---- $f (last 20 lines)" >&2
        tail -n 20 "$f" >&2
    done
}

gf_fail() {
    gf_logs
    fail "$*"
}

_gf_cleanup() {
    local i
    for (( i = ${#_gf_mounts[@]} - 1; i >= 0; i-- )); do
        gf_unmount "${_gf_mounts[$i]}" || true
    done
    if [ -n "${GF_DIR:-}" ] && [ "$_gf_own" -eq 0 ]; then
        gfrm -rf "$GF_DIR" >/dev/null 2>&1 || true
    fi
    if [ "$_gf_own" -eq 1 ]; then
        GFARM_BASE=$GFARM_BASE bash "$GFARM_LOCAL" stop purge >/dev/null 2>&1 ||
            echo "warning: could not stop the Gfarm under $GFARM_BASE" >&2
    fi
}

# _gf_setup BASE [--one]: start (or create) the instance at BASE, serialised
# with every other test doing the same (setup of a shared base, and the
# choice of free ports for new ones).
_gf_setup() {
    local base=$1 lock=${TMPDIR:-/tmp}/vmio-gfarm-setup.lock
    shift
    if ! GFARM_BASE=$base GFARM_PORT_BASE=${GFARM_PORT_BASE:-auto} \
        flock -o -w 120 "$lock" bash "$GFARM_LOCAL" setup "$@" >"$TMP/gfarm-setup.out" 2>&1; then
        cat "$TMP/gfarm-setup.out" >&2
        GFARM_BASE=$base gf_fail "could not start Gfarm under $base"
    fi
}

gfarm_up() {
    local c
    for c in gfmd gfsd gfhost gfls gfreg gfexport gfrep gfwhere; do
        command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$c" >/dev/null 2>&1 ||
            skip "Gfarm is not installed ($c not found: scripts/gfarm-local.sh install)"
    done
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "${PG_BINDIR:-}" ] ||
        skip "PostgreSQL (the Gfarm metadata backend) is not installed"
    command -v flock >/dev/null 2>&1 || skip "flock (util-linux) is not installed"
    export PATH=$PATH:/usr/sbin

    local base
    if [ -n "${VMIO_TEST_GFARM_BASE:-}" ]; then
        base=$VMIO_TEST_GFARM_BASE
        _gf_own=0
    else
        base=$TMP/gfarm
        _gf_own=1
        # The postgres user must reach the cluster directory below $TMP.
        [ "$(id -u)" -ne 0 ] || chmod 711 "$TMP"
    fi
    GFARM_BASE=$base
    if [ "$_gf_cleanup_registered" -eq 0 ]; then
        on_exit _gf_cleanup
        _gf_cleanup_registered=1
    fi
    # --one: one gfsd is enough (a new instance gets only one; an existing
    # shared one is used as it is).
    if [ "$_gf_own" -eq 0 ] && [ -f "$base/gfarm-local.env" ]; then
        _gf_setup "$base"
    else
        _gf_setup "$base" "$@"
    fi
    eval "$(GFARM_BASE=$base bash "$GFARM_LOCAL" env)"
    export GFARM_CONFIG_FILE GFARM_BASE GF_HOST1 GF_PORT1 GF_HOST2 GF_PORT2 GF_GFMD_PORT
    if [ "${1:-}" != --one ] && [ -z "$GF_HOST2" ]; then
        fail "the Gfarm under $base has one gfsd; this test needs two"
    fi
    GF_DIR=/vmio-test-$TEST_NAME-$$
    gfrm -rf "$GF_DIR" >/dev/null 2>&1 || true
    gfmkdir "$GF_DIR" || gf_fail "gfmkdir $GF_DIR failed"
    export GF_DIR
}

gf_mount() {
    local dir=$1
    shift
    mkdir -p "$dir"
    gfarm2fs "$dir" -o "modules=subdir,subdir=$GF_DIR" "$@" >"$TMP/gfarm2fs.out" 2>&1 ||
        { cat "$TMP/gfarm2fs.out" >&2; gf_fail "gfarm2fs on $dir failed"; }
    _gf_mounts+=("$dir")
    mountpoint -q "$dir" || gf_fail "gfarm2fs returned but $dir is not a mount point"
}

gf_unmount() {
    local dir=$1 keep=() m
    if mountpoint -q "$dir" 2>/dev/null; then
        fusermount -u "$dir" 2>/dev/null || umount "$dir" 2>/dev/null || umount -l "$dir"
    fi
    for m in ${_gf_mounts[@]+"${_gf_mounts[@]}"}; do
        [ "$m" = "$dir" ] || keep+=("$m")
    done
    _gf_mounts=(${keep[@]+"${keep[@]}"})
}
