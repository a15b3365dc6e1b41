#!/bin/bash
# Memory lending, lender side, on a real tgtd on loopback (private control
# port): the manager hands a borrower's request to vmio-memlend lender,
# which makes a tmpfs file and a CHAP-protected LUN; libiscsi's tools
# (iscsi-inq, iscsi-readcapacity16) and vmio-test-iscsi-rw check it and
# move data through it; a wrong or missing CHAP secret is refused; a
# released lease whose initiator is still logged in is NOT removed until
# it logs out; a reclaim (SIGUSR1) reaches the borrower, whose release
# makes the lender remove the target and free the tmpfs memory; SIGTERM
# withdraws the lender. Needs root (tmpfs mount), tgt and libiscsi.
. "$(dirname "$0")/functions.sh"

: "${VMIO_MEMLEND:?}"
[ -n "${VMIO_TEST_ISCSI_RW:-}" ] || skip "built without libiscsi-dev (vmio-test-iscsi-rw)"
[ "$(id -u)" -eq 0 ] || skip "needs root (tmpfs mount, tgtd)"
require_cmd tgtd tgtadm iscsi-inq iscsi-readcapacity16
RW=$VMIO_TEST_ISCSI_RW

free_port() { # a TCP port nobody listens on
    local p
    for _ in $(seq 50); do
        p=$(( 20000 + RANDOM % 20000 ))
        ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
    done
    return 1
}
CTL=$(( 10000 + $$ % 20000 ))       # tgtd management socket number, not TCP
PORT=$(free_port)
PORTAL=127.0.0.1:$PORT
tgtd -f -C "$CTL" --iscsi "portal=$PORTAL" >"$TMP/tgtd.log" 2>&1 &
TGTD_PID=$!
track_pid "$TGTD_PID"
tgta() { tgtadm -C "$CTL" --lld iscsi "$@"; }
wait_until 10 tgta --mode target --op show >/dev/null || fail "tgtd did not start"

make_secret "$TMP/secret"
"$VMIO_MEMLEND" manager --listen 127.0.0.1:0 --db "$TMP/db.sqlite" --secret-file "$TMP/secret" \
    --lease-seconds 6 --port-file "$TMP/mgr.port" --foreground >"$TMP/manager.log" 2>&1 &
track_pid $!
wait_until 20 test -s "$TMP/mgr.port" || fail "manager did not start"
MGR=127.0.0.1:$(cat "$TMP/mgr.port")

STATE=$TMP/state
on_exit "umount -l '$STATE/mem' 2>/dev/null"
start_lender() {
    "$VMIO_MEMLEND" lender --manager "$MGR" --secret-file "$TMP/secret" --name hosta \
        --portal "$PORTAL" --backend tgt --tgt-control-port "$CTL" --state-dir "$STATE" \
        --reserve 256M --max-lend 512M --interval 100 --lease-seconds 6 --calm 1 \
        --reclaim-deadline 60 "$@" >>"$TMP/lender.log" 2>&1 &
    LENDER_PID=$!
    track_pid "$LENDER_PID"
}
start_lender
offering() { grep -Eq '(registered|offer) .*offering [1-9]' "$TMP/lender.log"; }
wait_until 20 offering || fail "the lender offers nothing"
# Give the rate-limited offer time to reach 128 MiB.
sleep 1
ok "manager on $MGR, lender on tgtd portal $PORTAL (control $CTL)"

# --- a lease: LUN with CHAP ------------------------------------------------------
SIZE=$(( 64 * 1048576 ))
read -r ID IQN LUN LPORTAL < <("$RW" request "$MGR" "$TMP/secret" guest1 $SIZE) ||
    fail "request failed"
[ "$IQN" = "iqn.2026-12.org.vmio:hosta.lease$ID" ] || fail "unexpected IQN $IQN"
[ "$LUN" = 1 ] && [ "$LPORTAL" = "$PORTAL" ] || fail "unexpected LUN/portal $LUN $LPORTAL"
grep -q "provisioned lease $ID" "$TMP/lender.log" || fail "no provisioned line"
FILE=$STATE/mem/lease-$ID
[ "$(stat -c %s "$FILE")" = $SIZE ] || fail "backing file size"
[ "$(stat -f -c %T "$STATE/mem")" = tmpfs ] || fail "state dir is not on tmpfs"
tgta --mode target --op show | grep -q "Backing store path: $FILE" || fail "no LUN on $FILE"
ok "lease $ID: $IQN LUN $LUN, $SIZE-byte tmpfs file"

read -r CUSER CSECRET < <("$RW" chap "$TMP/secret" "$IQN")
URL="iscsi://$CUSER%$CSECRET@$PORTAL/$IQN/$LUN"
iscsi-inq "$URL" >"$TMP/inq.txt" || fail "iscsi-inq with CHAP"
grep -q "Peripheral Device Type:DIRECT_ACCESS" "$TMP/inq.txt" || fail "not a disk: $(cat "$TMP/inq.txt")"
iscsi-readcapacity16 "$URL" >"$TMP/cap.txt" || fail "iscsi-readcapacity16"
grep -qx "Total size:$SIZE" "$TMP/cap.txt" || fail "capacity: $(tail -1 "$TMP/cap.txt")"
ok "iscsi-inq and iscsi-readcapacity16 with CHAP: $SIZE bytes"

if iscsi-inq "iscsi://$CUSER%wrong-secret-0123456789abcdef@$PORTAL/$IQN/$LUN" >/dev/null 2>&1; then
    fail "a wrong CHAP secret was accepted"
fi
if iscsi-inq "iscsi://$PORTAL/$IQN/$LUN" >/dev/null 2>&1; then
    fail "a login without CHAP was accepted"
fi
OTHER=$("$RW" chap "$TMP/secret" "${IQN}9" | cut -d' ' -f2)
if iscsi-inq "iscsi://$CUSER%$OTHER@$PORTAL/$IQN/$LUN" >/dev/null 2>&1; then
    fail "another target's CHAP secret was accepted"
fi
ok "wrong, missing and foreign CHAP secrets are refused"

before=$(du -B1 "$FILE" | cut -f1)
"$RW" write "$URL" 7 $SIZE || fail "write through the LUN"
"$RW" verify "$URL" 7 $SIZE || fail "read back through the LUN"
if "$RW" verify "$URL" 8 $SIZE 2>/dev/null; then fail "verify with the wrong seed passed"; fi
after=$(du -B1 "$FILE" | cut -f1)
[ "$after" -ge $SIZE ] || fail "tmpfs file holds $after bytes after a full write (before $before)"
ok "64 MiB written and verified through the LUN; tmpfs holds $after bytes"

"$RW" attached "$MGR" "$TMP/secret" guest1 "$ID" || fail "attached"

# --- a released lease with an initiator still logged in is kept ----------------
read -r ID2 IQN2 _ _ < <("$RW" request "$MGR" "$TMP/secret" guest2 $(( 16 * 1048576 ))) ||
    fail "second request"
read -r U2 S2 < <("$RW" chap "$TMP/secret" "$IQN2")
URL2="iscsi://$U2%$S2@$PORTAL/$IQN2/1"
"$RW" hold "$URL2" 60 >"$TMP/hold.log" 2>&1 &
HOLD=$!
track_pid $HOLD
wait_until 10 grep -q "logged in" "$TMP/hold.log" || fail "hold did not log in"
"$RW" release "$MGR" "$TMP/secret" guest2 "$ID2" || fail "release of lease $ID2"
wait_until 10 grep -q "released lease $ID2" "$TMP/lender.log" || fail "lender not told of release"
sleep 1
tgta --mode target --op show | grep -q "$IQN2" || fail "target $IQN2 removed while logged in"
[ -e "$STATE/mem/lease-$ID2" ] || fail "backing file of $ID2 freed while logged in"
grep -q "lease $ID2: .*logged in" "$TMP/lender.log" || fail "the refusal was not reported"
kill "$HOLD"
wait "$HOLD" || true
untrack_pid "$HOLD"
wait_until 10 grep -q "removed lease $ID2: " "$TMP/lender.log" || fail "lease $ID2 not removed after logout"
tgta --mode target --op show | grep -q "$IQN2" && fail "target $IQN2 left"
[ ! -e "$STATE/mem/lease-$ID2" ] || fail "backing file of $ID2 left"
ok "lease $ID2: kept while an initiator was logged in, removed after its logout"

# --- reclaim: revoke -> borrower releases -> LUN removed, memory freed ----------
used_before=$(df -B1 --output=used "$STATE/mem" | tail -1)
"$RW" await-revoke "$MGR" "$TMP/secret" guest1 30 >"$TMP/revoke.log" 2>&1 &
REV=$!
track_pid $REV
sleep 0.5
kill -USR1 "$LENDER_PID"
wait "$REV" || fail "the borrower got no REVOKE: $(cat "$TMP/revoke.log")"
untrack_pid "$REV"
grep -qx "revoke $ID" "$TMP/revoke.log" || fail "revoke for the wrong lease: $(cat "$TMP/revoke.log")"
wait_until 10 grep -q "removed lease $ID: " "$TMP/lender.log" || fail "lease $ID not removed"
tgta --mode target --op show | grep -q "$IQN" && fail "target $IQN still there"
tgta --mode account --op show | grep -q "$CUSER" && fail "CHAP account $CUSER still there"
[ ! -e "$FILE" ] || fail "$FILE still there"
used_after=$(df -B1 --output=used "$STATE/mem" | tail -1)
[ $(( used_before - used_after )) -ge $SIZE ] ||
    fail "tmpfs used $used_before -> $used_after: memory not freed"
iscsi-inq "$URL" >/dev/null 2>&1 && fail "the removed LUN still answers"
lat=$(grep "removed lease $ID: " "$TMP/lender.log" | sed -n 's/.*, \([0-9.]*\) s after the reclaim decision.*/\1/p')
[ -n "$lat" ] || fail "no reclaim latency reported"
ok "reclaim: revoked, released, target and account removed, $(( (used_before - used_after) / 1048576 )) MiB freed, ${lat} s from decision to freed memory"

# --- stop: withdrawn ---------------------------------------------------------------
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || fail "lender exit status $?"
untrack_pid "$LENDER_PID"
grep -q "^stats .*removed=2" "$TMP/lender.log" || fail "stats: $(grep ^stats "$TMP/lender.log")"
grep -q "withdrawn" "$TMP/lender.log" || fail "lender did not withdraw"
ok "SIGTERM: withdrawn; $(grep ^stats "$TMP/lender.log")"

# --- the surplus policy end to end, on fixture memory files ---------------------
# Pressure reclaims the newest lease first; MemAvailable under the reserve
# reclaims the rest; a PROVISION that the surplus no longer covers is
# refused with ENOSPC.
G=1048576
meminfo() { printf 'MemTotal: %d kB\nMemAvailable: %d kB\n' $((8 * G)) "$1" >"$TMP/meminfo.new" &&
    mv "$TMP/meminfo.new" "$TMP/meminfo"; }
psi() { printf 'some avg10=%s avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n' \
    "$1" >"$TMP/psi.new" && mv "$TMP/psi.new" "$TMP/psi"; }
meminfo $((6 * G))
psi 0.00
: >"$TMP/lender.log"
STATE=$TMP/state-b
on_exit "umount -l '$STATE/mem' 2>/dev/null"
"$VMIO_MEMLEND" lender --manager "$MGR" --secret-file "$TMP/secret" --name hostb \
    --portal "$PORTAL" --backend tgt --tgt-control-port "$CTL" --state-dir "$STATE" \
    --reserve 1G --max-lend 512M --interval 100 --lease-seconds 6 --calm 1 \
    --meminfo "$TMP/meminfo" --psi "$TMP/psi" >>"$TMP/lender.log" 2>&1 &
LENDER_PID=$!
track_pid "$LENDER_PID"
wait_until 20 offering || fail "lender hostb offers nothing"
read -r IDX _ < <("$RW" request "$MGR" "$TMP/secret" guest3 $(( 32 * 1048576 ))) || fail "request X"
read -r IDY _ < <("$RW" request "$MGR" "$TMP/secret" guest3 $(( 32 * 1048576 ))) || fail "request Y"
"$RW" attached "$MGR" "$TMP/secret" guest3 "$IDX" && "$RW" attached "$MGR" "$TMP/secret" guest3 "$IDY" ||
    fail "attached X/Y"
"$RW" await-revoke "$MGR" "$TMP/secret" guest3 30 >"$TMP/revoke.log" 2>&1 &
REV=$!
track_pid $REV
sleep 0.5
psi 25.00
wait "$REV" || fail "no REVOKE under pressure: $(cat "$TMP/revoke.log")"
untrack_pid "$REV"
grep -qx "revoke $IDY" "$TMP/revoke.log" || fail "pressure did not revoke the newest lease $IDY first"
grep -q "pressure memory-pressure" "$TMP/lender.log" || fail "no pressure event"
wait_until 10 grep -q "removed lease $IDY: " "$TMP/lender.log" || fail "lease $IDY not removed"
grep -q "reclaim lease $IDX " "$TMP/lender.log" && fail "lease $IDX reclaimed too (one lease was enough)"
ok "PSI some avg10 25% > 10%: newest lease $IDY reclaimed and removed, $IDX kept"

psi 0.00
"$RW" await-revoke "$MGR" "$TMP/secret" guest3 30 >"$TMP/revoke.log" 2>&1 &
REV=$!
track_pid $REV
sleep 0.5
meminfo $((1 * G - 4096))
wait "$REV" || fail "no REVOKE under the reserve: $(cat "$TMP/revoke.log")"
untrack_pid "$REV"
grep -qx "revoke $IDX" "$TMP/revoke.log" || fail "wrong lease revoked: $(cat "$TMP/revoke.log")"
grep -q "pressure below-reserve" "$TMP/lender.log" || fail "no below-reserve event"
wait_until 10 grep -q "removed lease $IDX: " "$TMP/lender.log" || fail "lease $IDX not removed"
ok "MemAvailable under the reserve: lease $IDX reclaimed and removed"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || fail "lender hostb exit status $?"
untrack_pid "$LENDER_PID"

# ENOSPC: the lender samples rarely (the manager still sees a large offer),
# the memory is gone when the PROVISION comes: refused.
meminfo $((6 * G))
: >"$TMP/lender.log"
"$VMIO_MEMLEND" lender --manager "$MGR" --secret-file "$TMP/secret" --name hostc \
    --portal "$PORTAL" --backend tgt --tgt-control-port "$CTL" --state-dir "$STATE" \
    --reserve 1G --max-lend 512M --interval 60000 --lease-seconds 6 \
    --meminfo "$TMP/meminfo" --psi "$TMP/psi" >>"$TMP/lender.log" 2>&1 &
LENDER_PID=$!
track_pid "$LENDER_PID"
wait_until 20 offering || fail "lender hostc offers nothing"
meminfo $((1 * G + 8192))
if "$RW" request "$MGR" "$TMP/secret" guest4 $(( 32 * 1048576 )) >"$TMP/req.log" 2>&1; then
    fail "a request beyond the surplus was granted: $(cat "$TMP/req.log")"
fi
grep -q "refused lease .*ENOSPC" "$TMP/lender.log" || fail "no ENOSPC refusal: $(cat "$TMP/req.log")"
tgta --mode target --op show | grep -q "hostc" && fail "a target was left for the refused lease"
ok "PROVISION beyond the surplus refused with ENOSPC ($(tail -1 "$TMP/req.log"))"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || fail "lender hostc exit status $?"
untrack_pid "$LENDER_PID"

# --- a borrower that does not answer ------------------------------------------
# keep (default): past the deadline the LUN stays and lending stops. Then
# the lender is stopped with the lease still lent, and a lender started
# with the same name and --reclaim-now resumes it, reclaims it and exits
# once the borrower released it.
meminfo $((6 * G))
: >"$TMP/lender.log"
start_d() {
    "$VMIO_MEMLEND" lender --manager "$MGR" --secret-file "$TMP/secret" --name hostd \
        --portal "$PORTAL" --backend tgt --tgt-control-port "$CTL" --state-dir "$STATE" \
        --reserve 1G --max-lend 512M --interval 100 --lease-seconds 6 --calm 1 \
        --reclaim-deadline 2 --meminfo "$TMP/meminfo" --psi "$TMP/psi" "$@" >>"$TMP/lender.log" 2>&1 &
    LENDER_PID=$!
    track_pid "$LENDER_PID"
}
start_d
wait_until 20 offering || fail "lender hostd offers nothing"
read -r IDK IQNK _ < <("$RW" request "$MGR" "$TMP/secret" guest5 $(( 16 * 1048576 ))) || fail "request K"
"$RW" attached "$MGR" "$TMP/secret" guest5 "$IDK" || fail "attached K"
kill -USR1 "$LENDER_PID"
wait_until 10 grep -q "unresponsive lease $IDK: borrower did not release within 2 s" "$TMP/lender.log" ||
    fail "no unresponsive report"
sleep 0.5
tgta --mode target --op show | grep -q "$IQNK" || fail "LUN of the unresponsive borrower removed"
[ -e "$STATE/mem/lease-$IDK" ] || fail "file of the unresponsive borrower removed"
grep -q "offer offering 0 MiB" "$TMP/lender.log" || fail "lending not stopped"
ok "keep: no release within the deadline -> reported, LUN kept, offer 0"

kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || fail "lender hostd exit status $?"
untrack_pid "$LENDER_PID"
grep -q "still lent: their LUNs stay exported" "$TMP/lender.log" || fail "stop with a lease not reported"
tgta --mode target --op show | grep -q "$IQNK" || fail "LUN removed by the stop"
"$RW" await-revoke "$MGR" "$TMP/secret" guest5 30 >"$TMP/revoke.log" 2>&1 &
REV=$!
track_pid $REV
start_d --reclaim-now
wait "$LENDER_PID" || fail "drain: lender exit status $?"
untrack_pid "$LENDER_PID"
wait "$REV" || fail "drain: no REVOKE: $(cat "$TMP/revoke.log")"
untrack_pid "$REV"
grep -q "resumed lease $IDK: $IQNK" "$TMP/lender.log" || fail "lease $IDK not resumed"
grep -q "removed lease $IDK: " "$TMP/lender.log" || fail "lease $IDK not removed by the drain"
tgta --mode target --op show | grep -q "$IQNK" && fail "target $IQNK left after the drain"
ok "restart with --reclaim-now: lease $IDK resumed, revoked, released, removed; lender exited"

# force: past the deadline the LUN goes, but only while nobody is logged in.
: >"$TMP/lender.log"
start_d --on-unresponsive force
wait_until 20 offering || fail "lender hostd (force) offers nothing"
read -r IDF IQNF _ < <("$RW" request "$MGR" "$TMP/secret" guest6 $(( 16 * 1048576 ))) || fail "request F"
"$RW" attached "$MGR" "$TMP/secret" guest6 "$IDF" || fail "attached F"
read -r UF SF < <("$RW" chap "$TMP/secret" "$IQNF")
"$RW" hold "iscsi://$UF%$SF@$PORTAL/$IQNF/1" 60 >"$TMP/hold.log" 2>&1 &
HOLD=$!
track_pid $HOLD
wait_until 10 grep -q "logged in" "$TMP/hold.log" || fail "hold F did not log in"
kill -USR1 "$LENDER_PID"
wait_until 10 grep -q "unresponsive lease $IDF: no release after 2 s and 1 initiator(s) logged in" \
    "$TMP/lender.log" || fail "force: logged-in LUN not reported"
tgta --mode target --op show | grep -q "$IQNF" || fail "force removed a LUN with a session"
kill "$HOLD"
wait "$HOLD" || true
untrack_pid "$HOLD"
wait_until 10 grep -q "forced lease $IDF: .*force-removed" "$TMP/lender.log" ||
    fail "force: LUN not removed after the logout"
[ ! -e "$STATE/mem/lease-$IDF" ] || fail "force: file left"
# The borrower comes back and releases: the manager forgets the lease.
"$RW" release "$MGR" "$TMP/secret" guest6 "$IDF" || fail "late release of $IDF"
wait_until 10 grep -q "released lease $IDF: .*no LUN here any more" "$TMP/lender.log" ||
    fail "late release not handled"
ok "force: LUN kept while logged in, force-removed after the logout; late release forgotten"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || true
untrack_pid "$LENDER_PID"

# --- the manager restarts while a lease is lent ---------------------------------
# The lender reconnects, re-registers, the lease resumes (SQLite), and a
# reclaim afterwards goes through the new manager.
: >"$TMP/lender.log"
start_d
wait_until 20 offering || fail "lender hostd offers nothing (restart phase)"
read -r IDR IQNR _ < <("$RW" request "$MGR" "$TMP/secret" guest7 $(( 16 * 1048576 ))) || fail "request R"
"$RW" attached "$MGR" "$TMP/secret" guest7 "$IDR" || fail "attached R"
MGR_PID=$(pgrep -f -- "--port-file $TMP/mgr.port" | head -1)
[ -n "$MGR_PID" ] || fail "manager pid not found"
kill -TERM "$MGR_PID"
wait_until 10 grep -q "^[0-9:.]* disconnected" "$TMP/lender.log" || fail "lender did not notice"
"$VMIO_MEMLEND" manager --listen "$MGR" --db "$TMP/db.sqlite" --secret-file "$TMP/secret" \
    --lease-seconds 6 --foreground >"$TMP/manager2.log" 2>&1 &
track_pid $!
wait_until 20 bash -c "[ \$(grep -c '^[0-9:.]* registered' '$TMP/lender.log') -ge 2 ]" ||
    fail "lender did not re-register"
tgta --mode target --op show | grep -q "$IQNR" || fail "LUN lost across the manager restart"
"$RW" await-revoke "$MGR" "$TMP/secret" guest7 30 >"$TMP/revoke.log" 2>&1 &
REV=$!
track_pid $REV
sleep 0.5
kill -USR1 "$LENDER_PID"
wait "$REV" || fail "no REVOKE after the manager restart: $(cat "$TMP/revoke.log")"
untrack_pid "$REV"
wait_until 10 grep -q "removed lease $IDR: " "$TMP/lender.log" || fail "lease $IDR not removed"
ok "manager restart: lender reconnected, lease $IDR resumed, reclaimed and removed"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || fail "lender exit status $?"
untrack_pid "$LENDER_PID"
grep -q withdrawn "$TMP/lender.log" || fail "not withdrawn at the end"
echo "---- last lender events"
cat "$TMP/lender.log"
