#!/bin/bash
# Failures on a real Gfarm: a helper process killed mid-copy is replaced
# and the copy completes; a gfsd killed while an image is being written
# gives a clear error, and every write acknowledged (written + flushed)
# before it died is there once the gfsd is back.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/gfarm-env.sh"
[ -n "${VMIO_GFARM_HELPER:-}" ] || skip "libvmio was built without gfarm:// (libgfarm-dev missing)"
# This test kills and restarts a gfsd: never on a Gfarm shared with others.
unset VMIO_TEST_GFARM_BASE
gfarm_up

# 1. A helper process dies (SIGKILL) while an image is written: it is
#    replaced, the request it left undone is redone, nothing is lost.
"$VMIO_TEST_IO" --create "gfarm://$GF_DIR/h.img" truncate 0 >/dev/null || gf_fail "create h.img"
"$VMIO_TEST_ACK" write "gfarm://$GF_DIR/h.img?helpers=2" 32 20 > "$TMP/h.out" 2> "$TMP/h.err" &
w_pid=$!
track_pid "$w_pid"
wait_until 60 grep -q "^acked 3$" "$TMP/h.out" || { cat "$TMP/h.err"; fail "writer made no progress"; }
helpers=$(pgrep -P "$w_pid" -f vmio-gfarm-helper | tr '\n' ' ')
[ -n "$helpers" ] || fail "the writer runs no helper process"
kill -9 $helpers
wait_exit "$w_pid" 120
[ "$WAIT_RC" -eq 0 ] || { cat "$TMP/h.err"; fail "writer failed after its helpers were killed"; }
"$VMIO_TEST_ACK" verify "gfarm://$GF_DIR/h.img" 32 >/dev/null || fail "blocks lost after helpers died"
ok "helpers $helpers killed mid-write: replaced, all 32 blocks written and verified"

# 2. The gfsd holding the only replica dies mid-write.
head -c 64M /dev/zero > "$TMP/zero.raw"
gfreg -h "$GF_HOST1" "$TMP/zero.raw" "$GF_DIR/ack.img" || gf_fail "gfreg -h $GF_HOST1"
"$VMIO_TEST_ACK" write "gfarm://$GF_DIR/ack.img?helpers=2&route=direct" 64 50 \
    > "$TMP/ack.out" 2> "$TMP/ack.err" &
w_pid=$!
track_pid "$w_pid"
wait_until 60 grep -q "^acked 7$" "$TMP/ack.out" || { cat "$TMP/ack.err"; fail "writer made no progress"; }
# gfsd forks one process per client: kill its whole session, children too.
gfsd_pid=$(head -n 1 "$GFARM_BASE/run/gfsd1.pid")
gfsd_sid=$(ps -o sid= -p "$gfsd_pid" | tr -d ' ')
[ "$gfsd_sid" = "$gfsd_pid" ] || fail "gfsd $gfsd_pid does not lead its own session"
pkill -9 -s "$gfsd_sid"
wait_exit "$w_pid" 240
acked=$(grep -c '^acked' "$TMP/ack.out" || true)
if [ "$WAIT_RC" -eq 0 ]; then
    fail "the writer did not notice that gfsd 1 died ($acked blocks acked)"
else
    grep -Eq "E[A-Z]+: .*gfarm" "$TMP/ack.err" || { cat "$TMP/ack.err"; fail "unclear error"; }
    echo "writer stopped after $acked acked blocks: $(cat "$TMP/ack.err")"
fi
GFARM_BASE=$GFARM_BASE "$GFARM_LOCAL" setup > "$TMP/restart.log" 2>&1 ||
    { cat "$TMP/restart.log"; gf_fail "gfsd 1 did not come back"; }
wait_until 60 "$VMIO_TEST_ACK" verify "gfarm://$GF_DIR/ack.img?route=direct" "$acked" \
    > "$TMP/verify.out" 2>&1 || { cat "$TMP/verify.out"; gf_fail "acknowledged blocks lost"; }
ok "gfsd killed mid-write: clear error, all $acked acknowledged blocks present after restart"
