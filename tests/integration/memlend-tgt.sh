#!/bin/bash
# Memory lending, lender side, on a real tgtd on loopback (private control
# port): the manager hands a borrower's request to vmio-memlend lender,
# which makes a tmpfs file and a CHAP-protected LUN; libiscsi's tools
# (iscsi-inq, iscsi-readcapacity16) and vmio-test-iscsi-rw check it and
# move data through it; a wrong or missing CHAP secret is refused; a
# released lease whose initiator is still logged in is NOT removed until
# it logs out; a reclaim (SIGUSR1) reaches the borrower, whose release
# makes the lender remove the target and free the tmpfs memory; SIGTERM
# withdraws the lender. Then the failure cases: a reclaim decided while
# the manager is down is re-sent; a hung tgtadm times out within the
# lease; a lease dropped while PENDING is removed at once; tgtd restarting
# (it keeps no targets) loses no borrower's data; a recreated manager
# database cannot hand out a LUN in use. Needs root (tmpfs mount), tgt
# and libiscsi.
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
# The manager forgot the lease when the lender reported the LUN gone (the
# borrower hears LENDER_LOST); a late release is answered "unknown", or,
# if it came first, the lender answers it as having no LUN any more.
if "$RW" release "$MGR" "$TMP/secret" guest6 "$IDF" 2>"$TMP/late.log"; then
    wait_until 10 grep -q "released lease $IDF: .*no LUN here any more" "$TMP/lender.log" ||
        fail "late release not handled"
else
    grep -q "lease $IDF is unknown" "$TMP/late.log" || fail "late release of $IDF: $(cat "$TMP/late.log")"
fi
ok "force: LUN kept while logged in, force-removed after the logout; late release forgotten"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || true
untrack_pid "$LENDER_PID"

# --- the manager restarts while a lease is lent ---------------------------------
# The lender reconnects, re-registers, the lease resumes (SQLite). A
# reclaim decided while the manager was down is sent again once it is
# back, and its deadline (2 s here) runs only from the manager's yes: the
# borrower is revoked and not blamed for the outage.
: >"$TMP/lender.log"
start_d
wait_until 20 offering || fail "lender hostd offers nothing (restart phase)"
read -r IDR IQNR _ < <("$RW" request "$MGR" "$TMP/secret" guest7 $(( 16 * 1048576 ))) || fail "request R"
"$RW" attached "$MGR" "$TMP/secret" guest7 "$IDR" || fail "attached R"
MGR_PID=$(pgrep -f -- "--port-file $TMP/mgr.port" | head -1)
[ -n "$MGR_PID" ] || fail "manager pid not found"
kill -TERM "$MGR_PID"
wait_until 10 grep -q "^[0-9:.]* disconnected" "$TMP/lender.log" || fail "lender did not notice"
kill -USR1 "$LENDER_PID"
wait_until 10 grep -q "reclaim lease $IDR " "$TMP/lender.log" || fail "no reclaim while the manager is down"
sleep 3   # longer than the 2 s deadline
"$VMIO_MEMLEND" manager --listen "$MGR" --db "$TMP/db.sqlite" --secret-file "$TMP/secret" \
    --lease-seconds 6 --foreground >"$TMP/manager2.log" 2>&1 &
MGR_PID=$!
track_pid $MGR_PID
wait_until 20 bash -c "[ \$(grep -c '^[0-9:.]* registered' '$TMP/lender.log') -ge 2 ]" ||
    fail "lender did not re-register"
tgta --mode target --op show | grep -q "$IQNR" || fail "LUN lost across the manager restart"
"$RW" await-revoke "$MGR" "$TMP/secret" guest7 30 >"$TMP/revoke.log" 2>&1 &
REV=$!
track_pid $REV
wait "$REV" || fail "the reclaim made while the manager was down never reached the borrower: $(cat "$TMP/revoke.log")"
untrack_pid "$REV"
grep -qx "revoke $IDR" "$TMP/revoke.log" || fail "wrong lease revoked: $(cat "$TMP/revoke.log")"
wait_until 10 grep -q "removed lease $IDR: " "$TMP/lender.log" || fail "lease $IDR not removed"
grep -q "unresponsive lease $IDR" "$TMP/lender.log" && fail "borrower of $IDR blamed for the manager's outage"
ok "manager restart: lender reconnected, lease $IDR resumed; its reclaim made during the outage was re-sent, released and removed"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || fail "lender exit status $?"
untrack_pid "$LENDER_PID"
grep -q withdrawn "$TMP/lender.log" || fail "not withdrawn at the end"
# --- a hung tgtadm, a request given up while the LUN is being made ----------------
# tgtadm goes through a wrapper that can delay or hang "target new" and
# "logicalunit new" (the real tgtadm does the work; a delay stays under
# the 2 s tool timeout). A hung tool must time out well within the
# lender's lease (6 s here), not after 30 s; a lease the manager drops
# while PENDING (its borrower went away) must be removed at once, not
# kept as lent.
mkdir -p "$TMP/slowbin"
cat >"$TMP/slowbin/tgtadm" <<WRAPPER
#!/bin/bash
case " \$* " in
*" --mode target --op new "*|*" --mode logicalunit --op new "*)
    d=\$(cat "$TMP/tgtadm-delay" 2>/dev/null)
    [ "\$d" = hang ] && exec sleep 60
    [ -n "\$d" ] && sleep "\$d" ;;
esac
exec $(command -v tgtadm) "\$@"
WRAPPER
chmod +x "$TMP/slowbin/tgtadm"
STATE=$TMP/state-e
on_exit "umount -l '$STATE/mem' 2>/dev/null"
: >"$TMP/lender.log"
start_e() {
    PATH="$TMP/slowbin:$PATH" "$VMIO_MEMLEND" lender --manager "$MGR" --secret-file "$TMP/secret" \
        --name hoste --portal "$PORTAL" --backend tgt --tgt-control-port "$CTL" --state-dir "$STATE" \
        --reserve 1G --max-lend 512M --interval 100 --lease-seconds 6 --calm 1 \
        --reclaim-deadline 60 --meminfo "$TMP/meminfo" --psi "$TMP/psi" "$@" >>"$TMP/lender.log" 2>&1 &
    LENDER_PID=$!
    track_pid "$LENDER_PID"
}
meminfo $((6 * G))
start_e
wait_until 20 offering || fail "lender hoste offers nothing"
sleep 1
echo hang >"$TMP/tgtadm-delay"
t0=$(date +%s)
if timeout 20 "$RW" request "$MGR" "$TMP/secret" guest8 $(( 16 * 1048576 )) >"$TMP/req.log" 2>&1; then
    fail "a request was granted while tgtadm hangs"
fi
t1=$(date +%s)
grep -q "refused lease .*timed out after 2 s" "$TMP/lender.log" ||
    fail "hung tgtadm: no timely refusal ($(( t1 - t0 )) s): $(grep -E 'refused|error' "$TMP/lender.log" | tail -2)"
[ $(( t1 - t0 )) -le 8 ] || fail "the refusal took $(( t1 - t0 )) s (lease 6 s)"
grep -q "is LOST" "$TMP/manager2.log" && fail "leases LOST while tgtadm hung"
ok "hung tgtadm: timed out after 2 s, PROVISION refused in $(( t1 - t0 )) s, no lease LOST"

echo 0.7 >"$TMP/tgtadm-delay"   # twice: target and LUN
"$RW" request "$MGR" "$TMP/secret" guest8 $(( 16 * 1048576 )) >"$TMP/req.log" 2>&1 &
REQ=$!
track_pid $REQ
sleep 0.4
kill -9 "$REQ"   # the borrower gives up (Ctrl-C) while the lender runs tgtadm
wait "$REQ" 2>/dev/null || true
untrack_pid "$REQ"
wait_until 10 grep -q "released lease [0-9]*: cancelled by the manager before it was ready" "$TMP/lender.log" ||
    fail "a lease dropped while PENDING was kept: $(tail -3 "$TMP/lender.log")"
IDC=$(sed -n 's/.*released lease \([0-9]*\): cancelled by the manager.*/\1/p' "$TMP/lender.log" | head -1)
wait_until 10 grep -q "removed lease $IDC: " "$TMP/lender.log" || fail "lease $IDC not removed"
tgta --mode target --op show | grep -q "hoste.lease$IDC\$" && fail "target of the cancelled lease $IDC left"
[ ! -e "$STATE/mem/lease-$IDC" ] || fail "file of the cancelled lease $IDC left"
grep -q "unexported($IDC)" "$TMP/lender.log" && fail "unexported sent for a lease the manager dropped"
ok "borrower gone while PENDING: lease $IDC (provided -> ENOENT) removed at once, file freed"
: >"$TMP/tgtadm-delay"

# --- tgtd restarts (it keeps no targets) while a lease is attached -----------------
# The lender, restarted too, must NOT free the file (the borrower's swapped
# pages): it re-creates the target (same IQN, same CHAP) and the data is
# still there.
read -r IDT IQNT _ < <("$RW" request "$MGR" "$TMP/secret" guest9 $(( 16 * 1048576 ))) || fail "request T"
read -r UT ST < <("$RW" chap "$TMP/secret" "$IQNT")
URLT="iscsi://$UT%$ST@$PORTAL/$IQNT/1"
"$RW" write "$URLT" 23 $(( 16 * 1048576 )) || fail "write T"
"$RW" attached "$MGR" "$TMP/secret" guest9 "$IDT" || fail "attached T"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || fail "lender hoste exit status $?"
untrack_pid "$LENDER_PID"
kill -TERM "$TGTD_PID"
wait_until 10 bash -c "! kill -0 $TGTD_PID 2>/dev/null" || kill -KILL "$TGTD_PID"
wait "$TGTD_PID" 2>/dev/null || true
untrack_pid "$TGTD_PID"
tgtd -f -C "$CTL" --iscsi "portal=$PORTAL" >>"$TMP/tgtd.log" 2>&1 &
TGTD_PID=$!
track_pid "$TGTD_PID"
wait_until 10 tgta --mode target --op show >/dev/null || fail "tgtd did not restart"
tgta --mode target --op show | grep -q "$IQNT" && fail "tgtd kept the target (the test needs it gone)"
[ -e "$STATE/mem/lease-$IDT" ] || fail "file of $IDT gone before the lender restarted"
: >"$TMP/lender.log"
start_e
wait_until 20 offering || fail "lender hoste offers nothing after tgtd's restart"
grep -q "resumed lease $IDT: $IQNT .*target re-created" "$TMP/lender.log" ||
    fail "target of $IDT not re-created: $(grep "$IDT" "$TMP/lender.log")"
[ -e "$STATE/mem/lease-$IDT" ] || fail "file of the ATTACHED lease $IDT freed"
"$RW" verify "$URLT" 23 $(( 16 * 1048576 )) || fail "the borrower's data on $IDT is gone"
ok "tgtd + lender restart: ATTACHED lease $IDT kept, target re-created with the same CHAP, 16 MiB verified"

# --- the manager's database is recreated: lease ids start again -----------------
# A new lease with the id of one still exported here (another borrower,
# another size) is refused with EEXIST; the old LUN and its data stay.
kill -TERM "$MGR_PID"
wait "$MGR_PID" 2>/dev/null || true
untrack_pid "$MGR_PID"
wait_until 10 grep -q "^[0-9:.]* disconnected" "$TMP/lender.log" || fail "hoste did not notice"
rm -f "$TMP/db.sqlite" "$TMP/db.sqlite-wal" "$TMP/db.sqlite-shm" "$TMP/db.sqlite-journal"
"$VMIO_MEMLEND" manager --listen "$MGR" --db "$TMP/db.sqlite" --secret-file "$TMP/secret" \
    --lease-seconds 6 --foreground >"$TMP/manager3.log" 2>&1 &
MGR_PID=$!
track_pid $MGR_PID
wait_until 20 bash -c "[ \$(grep -c '^[0-9:.]* registered' '$TMP/lender.log') -ge 2 ]" ||
    fail "hoste did not re-register with the new manager"
wait_until 10 grep -q "lease $IDT: unknown to the manager" "$TMP/lender.log" ||
    fail "lease $IDT not reported as unknown to the new manager"
# Use up the ids below IDT with leases that come and go.
n=0
while :; do
    read -r IDN _ < <("$RW" request "$MGR" "$TMP/secret" guest10 $(( 8 * 1048576 )) 2>>"$TMP/req.log") || break
    [ "$IDN" != "$IDT" ] || fail "lease id $IDT handed out again (the old LUN, in use)"
    "$RW" release "$MGR" "$TMP/secret" guest10 "$IDN" || fail "release $IDN"
    n=$((n + 1))
    [ "$n" -lt 200 ] || fail "ids never reached $IDT"
done
grep -q "refused lease $IDT .*EEXIST" "$TMP/lender.log" ||
    fail "lease id $IDT handed out again: $(grep "lease $IDT" "$TMP/lender.log" | tail -3)"
tgta --mode target --op show | grep -q "$IQNT" || fail "old LUN $IQNT removed"
"$RW" verify "$URLT" 23 $(( 16 * 1048576 )) || fail "the old borrower's data on $IDT changed"
ok "recreated manager database: new lease $IDT refused with EEXIST ($n ids used up first), the old LUN and its data kept"
kill -TERM "$LENDER_PID"
wait "$LENDER_PID" || true
untrack_pid "$LENDER_PID"
echo "---- last lender events"
cat "$TMP/lender.log"
