#!/bin/bash
# Failures on a real Gfarm: a helper process killed mid-copy is replaced
# and the copy completes; a gfsd killed while an image is being written
# gives a clear error, and every write acknowledged (written + flushed)
# before it died is there once the gfsd is back.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/gfarm-env.sh"
[ -n "${VMIO_GFARM_HELPER:-}" ] || skip "libvmio was built without gfarm:// (libgfarm-dev missing)"
gfarm_up

# 1. A helper process dies (SIGKILL) while vmio-cp runs.
make_dense "$TMP/src.raw" 128
"$VMIO_CP" -q -Q 4 "$TMP/src.raw" "gfarm://$GF_DIR/h.img?helpers=2" > "$TMP/cp.out" 2>&1 &
cp_pid=$!
track_pid "$cp_pid"
wait_until 20 pgrep -P "$cp_pid" -f vmio-gfarm-helper >/dev/null ||
    fail "vmio-cp started no helper"
victim=$(pgrep -P "$cp_pid" -f vmio-gfarm-helper | tail -n 1)
kill -9 "$victim"
wait_exit "$cp_pid" 120
[ "$WAIT_RC" -eq 0 ] || { cat "$TMP/cp.out"; fail "vmio-cp failed after a helper was killed"; }
gfexport "$GF_DIR/h.img" > "$TMP/h.out"
cmp "$TMP/src.raw" "$TMP/h.out" || fail "content wrong after a helper was replaced"
ok "helper $victim killed mid-copy: replaced, copy complete and correct"

# 2. The gfsd holding the only replica dies mid-write.
head -c 64M /dev/zero > "$TMP/zero.raw"
gfreg -h "$GF_HOST1" "$TMP/zero.raw" "$GF_DIR/ack.img" || gf_fail "gfreg -h $GF_HOST1"
"$VMIO_TEST_ACK" write "gfarm://$GF_DIR/ack.img?helpers=2&route=direct" 64 \
    > "$TMP/ack.out" 2> "$TMP/ack.err" &
w_pid=$!
track_pid "$w_pid"
wait_until 60 grep -q "^acked 7$" "$TMP/ack.out" || { cat "$TMP/ack.err"; fail "writer made no progress"; }
kill -9 "$(head -n 1 "$GFARM_BASE/run/gfsd1.pid")"
wait_exit "$w_pid" 240
acked=$(grep -c '^acked' "$TMP/ack.out" || true)
if [ "$WAIT_RC" -eq 0 ]; then
    # libgfarm may finish the file elsewhere; then every block was acked.
    [ "$acked" -eq 64 ] || fail "writer exited 0 after $acked of 64 blocks"
    echo "note: the writer completed although gfsd 1 died"
else
    grep -Eq "E[A-Z]+: .*gfarm" "$TMP/ack.err" || { cat "$TMP/ack.err"; fail "unclear error"; }
    echo "writer stopped after $acked acked blocks: $(cat "$TMP/ack.err")"
fi
GFARM_BASE=$GFARM_BASE "$GFARM_LOCAL" setup > "$TMP/restart.log" 2>&1 ||
    { cat "$TMP/restart.log"; gf_fail "gfsd 1 did not come back"; }
wait_until 60 "$VMIO_TEST_ACK" verify "gfarm://$GF_DIR/ack.img?route=direct" "$acked" \
    > "$TMP/verify.out" 2>&1 || { cat "$TMP/verify.out"; gf_fail "acknowledged blocks lost"; }
ok "gfsd killed mid-write: clear error, all $acked acknowledged blocks present after restart"
