#!/bin/bash
# vmiod killed with SIGKILL during a large copy and started again on the
# same port: the client reconnects, resends what was not answered, and the
# copy completes with identical data, in both directions.
. "$(dirname "$0")/functions.sh"
require_cmd cmp

make_secret "$TMP/secret"
mkdir "$TMP/export"
export VMIO_SECRET_FILE="$TMP/secret"
make_dense "$TMP/export/big.raw" 128
start_vmiod srv --export "img=$TMP/export" --secret-file "$TMP/secret"
PORT=$VMIOD_PORT
H="vmio://127.0.0.1:$PORT/img"

# interrupt FILE-TO-WATCH: once FILE has grown past 4 MiB, SIGKILL vmiod
# and start a new one on the same port.
interrupt() {
    wait_until 60 grown_past "$1" 4194304 ||
        fail "the copy did not start"
    kill -0 "$CP" 2>/dev/null || fail "the copy finished before the server was killed"
    kill -9 "$VMIOD_PID"
    wait "$VMIOD_PID" 2>/dev/null || true
    untrack_pid "$VMIOD_PID"
    sleep 0.5
    start_vmiod srv2 --listen "127.0.0.1:$PORT" --export "img=$TMP/export" \
        --secret-file "$TMP/secret"
    [ "$VMIOD_PORT" -eq "$PORT" ] || fail "the new vmiod listens on $VMIOD_PORT, not $PORT"
}

# Download: the reads in flight are resent.
"$VMIO_CP" -Q 2 -r 4k --no-progress "$H/big.raw" "$TMP/down.raw" >"$TMP/cp1.out" 2>&1 &
CP=$!
track_pid "$CP"
interrupt "$TMP/down.raw"
wait_exit "$CP" 120
rc=$WAIT_RC
[ "$rc" -eq 0 ] || { cat "$TMP/cp1.out"; fail "download exited $rc across a server restart"; }
cmp "$TMP/export/big.raw" "$TMP/down.raw" || fail "download across a restart differs"
ok "download completed across a server restart"

# Upload: the writes in flight are resent (positional, so idempotent).
"$VMIO_CP" -Q 2 -r 4k --no-progress "$TMP/down.raw" "$H/up.raw" >"$TMP/cp2.out" 2>&1 &
CP=$!
track_pid "$CP"
interrupt "$TMP/export/up.raw"
wait_exit "$CP" 120
rc=$WAIT_RC
[ "$rc" -eq 0 ] || { cat "$TMP/cp2.out"; fail "upload exited $rc across a server restart"; }
cmp "$TMP/down.raw" "$TMP/export/up.raw" || fail "upload across a restart differs"
ok "upload completed across a server restart"
stop_pid "$VMIOD_PID" || fail "vmiod exited with status $? on SIGTERM"
