#!/bin/bash
# vmiod killed with SIGKILL in the middle of a large vmio-cp copy: the copy
# must fail with a clear error once the reconnect timeout has passed, not
# hang and not report success.
. "$(dirname "$0")/functions.sh"

RECONNECT_S=3
make_secret "$TMP/secret"
mkdir "$TMP/export"
export VMIO_SECRET_FILE="$TMP/secret"
make_dense "$TMP/export/big.raw" 128
start_vmiod srv --export "img=$TMP/export" --secret-file "$TMP/secret"
URI="vmio://127.0.0.1:$VMIOD_PORT/img/big.raw?reconnect-timeout=$RECONNECT_S"

# Small requests, one at a time: the copy takes long enough to be hit.
"$VMIO_CP" -Q 1 -r 4k --no-progress "$URI" "$TMP/dst.raw" >"$TMP/cp.out" 2>&1 &
CP=$!
track_pid "$CP"
wait_until 60 grown_past "$TMP/dst.raw" 4194304 ||
    fail "the copy did not start"
kill -0 "$CP" 2>/dev/null || fail "the copy finished before the server was killed"
kill -9 "$VMIOD_PID"
t0=$(date +%s%N)
wait_exit "$CP" 120
rc=$WAIT_RC
elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
cat "$TMP/cp.out"
[ "$rc" -eq 1 ] || fail "vmio-cp exited $rc after the server died, expected 1"
grep -Eq "connection to 127.0.0.1:$VMIOD_PORT lost and not re-established within $(( RECONNECT_S * 1000 )) ms" \
    "$TMP/cp.out" || fail "vmio-cp did not explain the failure"
[ "$elapsed_ms" -ge $(( RECONNECT_S * 1000 - 500 )) ] ||
    fail "vmio-cp gave up after $elapsed_ms ms, before the reconnect timeout"
[ "$elapsed_ms" -le $(( RECONNECT_S * 1000 + 10000 )) ] ||
    fail "vmio-cp needed $elapsed_ms ms to fail (reconnect timeout ${RECONNECT_S}s)"
ok "copy failed clearly after $elapsed_ms ms (reconnect timeout ${RECONNECT_S}s)"
