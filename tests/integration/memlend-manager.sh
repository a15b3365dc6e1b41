#!/bin/bash
# vmio-memlend manager and status: the daemon serves, a lender and a
# borrower (vmio-test-memlend) make a lease, `status --json` shows it; the
# manager is killed with SIGKILL and started again on the same database
# and port: the lease and the lender are still there, the lender's lease
# then expires (no heartbeats any more) and the lease becomes LOST; a
# borrower that disconnects before reporting ATTACHED has its READY lease
# given back (the lender removes it); a
# second manager on the same database, a wrong secret and bad arguments
# fail with clear messages.
. "$(dirname "$0")/functions.sh"
: "${VMIO_MEMLEND:?}" "${VMIO_TEST_MEMLEND:?}"
require_cmd python3

make_secret "$TMP/secret"
DB=$TMP/manager.db
ML=$VMIO_MEMLEND

# start_manager NAME [args]: foreground manager, sets MGR_PID and PORT.
start_manager() {
    local name=$1
    shift
    rm -f "$TMP/$name.port"
    "$ML" manager --db "$DB" --secret-file "$TMP/secret" --lease-seconds 2 -f \
        --port-file "$TMP/$name.port" "$@" >"$TMP/$name.log" 2>&1 &
    MGR_PID=$!
    track_pid "$MGR_PID"
    if ! wait_until 20 test -s "$TMP/$name.port"; then
        ! grep -q "built without SQLite" "$TMP/$name.log" || skip "libvmio built without SQLite"
        fail "manager $name did not start"
    fi
    PORT=$(cat "$TMP/$name.port")
    wait_until 5 grep -q "^listening on 127.0.0.1:$PORT\$" "$TMP/$name.log" ||
        fail "manager $name did not print 'listening on 127.0.0.1:$PORT'"
}

# jq-like checks with python: json_check FILE PYTHON-EXPRESSION (s = doc)
json_check() {
    python3 - "$1" "$2" <<'EOF' || fail "status JSON check failed: $2"
import json, sys
s = json.load(open(sys.argv[1]))
if not eval(sys.argv[2]):
    print(json.dumps(s, indent=1), file=sys.stderr)
    sys.exit(1)
EOF
}

status_json() {
    "$ML" status --manager "127.0.0.1:$PORT" --secret-file "$TMP/secret" --json >"$1" ||
        fail "status --json failed"
}

# Usage errors.
expect 2 "needs --listen, --db and --secret-file" "$ML" manager --listen 127.0.0.1:0
expect 2 "lease-seconds" "$ML" manager --listen 127.0.0.1:0 --db "$DB" \
    --secret-file "$TMP/secret" --lease-seconds 0
expect 2 "attach-timeout" "$ML" manager --listen 127.0.0.1:0 --db "$DB" \
    --secret-file "$TMP/secret" --attach-timeout 0
expect 1 "HOST:PORT" "$ML" manager --listen localhost --db "$DB" --secret-file "$TMP/secret" -f

start_manager m1 --listen 127.0.0.1:0
status_json "$TMP/s0.json"
json_check "$TMP/s0.json" 's["lenders"] == [] and s["leases"] == []'
ok "a new manager has no lenders and no leases"

"$VMIO_TEST_MEMLEND" lend "127.0.0.1:$PORT" "$TMP/secret" lenderA 127.0.0.1:3260 1073741824 \
    >"$TMP/lender.out" 2>&1 &
LENDER=$!
track_pid "$LENDER"
wait_until 10 grep -q registered "$TMP/lender.out" || fail "the lender did not register"
out=$("$VMIO_TEST_MEMLEND" borrow "127.0.0.1:$PORT" "$TMP/secret" vm1 67108864) ||
    fail "borrow failed: $out"
read -r _ ID LENDER_NAME IQN LUN <<<"$out"
[ "$LENDER_NAME" = lenderA ] || fail "lease from '$LENDER_NAME'"
[ "$IQN" = "iqn.2026-12.org.vmio:lenderA.lease$ID" ] || fail "unexpected IQN $IQN"
[ "$LUN" = 1 ] || fail "unexpected LUN $LUN"
status_json "$TMP/s1.json"
json_check "$TMP/s1.json" "len(s['leases']) == 1 and s['leases'][0]['id'] == $ID and \
s['leases'][0]['state'] == 'ATTACHED' and s['leases'][0]['target_iqn'] == '$IQN' and \
s['leases'][0]['size'] == 67108864 and s['lenders'][0]['name'] == 'lenderA' and \
s['lenders'][0]['available'] is True and s['lenders'][0]['lent'] == 67108864"
ok "lease $ID ATTACHED, lender available, in status --json"
expect 0 "ATTACHED +64.0 MiB +lenderA +vm1" "$ML" status --manager "127.0.0.1:$PORT" \
    --secret-file "$TMP/secret"

# A borrower gone between READY and ATTACHED: the lease is given back and
# the lender removes it.
out=$("$VMIO_TEST_MEMLEND" request "127.0.0.1:$PORT" "$TMP/secret" vm2 67108864) ||
    fail "request failed: $out"
read -r _ ID2 <<<"$out"
only_first() {
    status_json "$TMP/s1b.json"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if [l["id"] for l in s["leases"]] == [int(sys.argv[2])] else 1)' "$TMP/s1b.json" "$ID"
}
wait_until 10 only_first || fail "lease $ID2 of a borrower that never attached was not given back"
grep -q "lease $ID2 of vm2 given back to lenderA" "$TMP/m1.log" ||
    fail "no 'given back' in the manager's log"
ok "a READY lease whose borrower left before ATTACHED is given back and removed"

# Refusals.
make_secret "$TMP/other"
expect 1 "shared secret" "$ML" status --manager "127.0.0.1:$PORT" --secret-file "$TMP/other"
expect 1 "in use by another manager" "$ML" manager --listen 127.0.0.1:0 --db "$DB" \
    --secret-file "$TMP/secret" -f
expect 1 "belongs to borrower vm1" "$VMIO_TEST_MEMLEND" release "127.0.0.1:$PORT" \
    "$TMP/secret" vm2 "$ID"

# kill -9 and restart on the same database and port.
kill -9 "$MGR_PID"
wait "$MGR_PID" 2>/dev/null || true
untrack_pid "$MGR_PID"
wait_exit "$LENDER" 10
[ "$WAIT_RC" -eq 0 ] || fail "the lender helper exited $WAIT_RC when the manager died"
start_manager m2 --listen "127.0.0.1:$PORT"
status_json "$TMP/s2.json"
json_check "$TMP/s2.json" "len(s['leases']) == 1 and s['leases'][0]['id'] == $ID and \
s['leases'][0]['state'] == 'ATTACHED' and s['leases'][0]['target_iqn'] == '$IQN' and \
s['lenders'][0]['name'] == 'lenderA' and s['lenders'][0]['available'] is True"
ok "after kill -9 and a restart the lease and the lender are still there"

# Nobody heartbeats for lenderA any more: its lease expires and the
# borrowed lease is LOST.
lost() {
    status_json "$TMP/s3.json"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["leases"][0]["state"] == "LOST" and not s["lenders"][0]["available"] else 1)' "$TMP/s3.json"
}
wait_until 15 lost || fail "the lease did not become LOST after the lender's lease expired"
ok "lender expired: lease LOST"
"$VMIO_TEST_MEMLEND" release "127.0.0.1:$PORT" "$TMP/secret" vm1 "$ID" || fail "release failed"
status_json "$TMP/s4.json"
json_check "$TMP/s4.json" "s['leases'][0]['state'] == 'RELEASED'"
ok "released"

stop_pid "$MGR_PID" || fail "the manager exited with status $? on SIGTERM"
[ ! -e "$TMP/m2.port" ] || fail "the port file was not removed"
ok "SIGTERM stops the manager cleanly"
