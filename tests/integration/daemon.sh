#!/bin/bash
# vmiod as a daemon (no --foreground): the command returns once the server
# listens, the pid file names a live process that serves, and SIGTERM stops
# it cleanly.
. "$(dirname "$0")/functions.sh"
require_cmd cmp

make_secret "$TMP/secret"
mkdir "$TMP/export"
make_image "$TMP/export/disk.raw" 8
on_exit '[ -s "$TMP/vmiod.pid" ] && kill -9 "$(cat "$TMP/vmiod.pid")" 2>/dev/null'

rc=0
timeout 30 "$VMIOD" --listen 127.0.0.1:0 --port-file "$TMP/port" --pid-file "$TMP/vmiod.pid" \
    --export "img=$TMP/export" --secret-file "$TMP/secret" >"$TMP/daemon.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$TMP/daemon.log"; fail "vmiod exited $rc when daemonising"; }
[ -s "$TMP/vmiod.pid" ] || fail "no pid file"
PID=$(cat "$TMP/vmiod.pid")
case $PID in ''|*[!0-9]*) fail "bad pid file: '$PID'" ;; esac
kill -0 "$PID" 2>/dev/null || fail "the daemon (pid $PID) is not running"
[ "$(ps -o ppid= -p "$PID" | tr -d ' ')" != "$$" ] || fail "vmiod did not detach"
[ -s "$TMP/port" ] || fail "no port file once the daemon returned"
ok "daemon pid $PID listens on port $(cat "$TMP/port")"

VMIO_SECRET_FILE="$TMP/secret" "$VMIO_CP" -q "vmio://127.0.0.1:$(cat "$TMP/port")/img/disk.raw" \
    "$TMP/copy.raw"
cmp "$TMP/export/disk.raw" "$TMP/copy.raw" || fail "copy from the daemon differs"
ok "the daemon serves"

kill -TERM "$PID"
wait_until 10 exited "$PID" || fail "the daemon ignored SIGTERM"
# A clean shutdown removes the pid file (a crash would leave it).
wait_until 5 test ! -e "$TMP/vmiod.pid" || fail "the daemon left its pid file behind"
ok "the daemon stopped on SIGTERM and removed its pid file"
