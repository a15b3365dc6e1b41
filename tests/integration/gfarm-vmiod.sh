#!/bin/bash
# Replica-aware data path: vmiod exports a Gfarm directory, the gfarm://
# client asks gfmd where the replicas are (gfs_replica_info_by_name) and
# talks to the vmiod listed for a replica host in its routes table; it
# falls back to libgfarm when that vmiod is down. Writes through a vmiod
# keep Gfarm's metadata right (gfls, gfexport, gfarm2fs).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/gfarm-env.sh"
[ -n "${VMIO_GFARM_HELPER:-}" ] || skip "libvmio was built without gfarm:// (libgfarm-dev missing)"
gfarm_up
make_secret "$TMP/secret"
export VMIO_SECRET_FILE=$TMP/secret

gfexport_cmp() {
    gfexport "$2" > "$TMP/export.out" || gf_fail "gfexport $2 failed"
    cmp "$1" "$TMP/export.out" || gf_fail "gfexport $2 differs from $1"
}
# opened_by LOG PATH: that vmiod opened PATH.
opened_by() { grep -q "opened img/$2 " "$TMP/$1.log"; }

# One vmiod per file system node (here both on loopback).
start_vmiod vmiod1 --secret-file "$TMP/secret" --export "img=gfarm://$GF_DIR"
PID1=$VMIOD_PID PORT1=$VMIOD_PORT
start_vmiod vmiod2 --secret-file "$TMP/secret" --export "img=gfarm://$GF_DIR"
PID2=$VMIOD_PID PORT2=$VMIOD_PORT
cat > "$TMP/routes" <<ROUTES
# gfsd host   vmiod export                   Gfarm directory
$GF_HOST1     vmio://127.0.0.1:$PORT1/img     $GF_DIR
$GF_HOST2     vmio://127.0.0.1:$PORT2/img/    $GF_DIR/
ROUTES
export VMIO_GFARM_ROUTES=$TMP/routes

# one.img: a single replica, on node 2. both.img: replicas on both nodes.
make_dense "$TMP/one.raw" 8
make_dense "$TMP/both.raw" 8
gfreg -h "$GF_HOST2" "$TMP/one.raw" "$GF_DIR/one.img" || gf_fail "gfreg -h $GF_HOST2"
gfreg -h "$GF_HOST1" "$TMP/both.raw" "$GF_DIR/both.img" || gf_fail "gfreg -h $GF_HOST1"
gfrep -D "$GF_HOST2" "$GF_DIR/both.img" || gf_fail "gfrep to $GF_HOST2"
[ "$(gfwhere "$GF_DIR/one.img" | tr -s ' \n' ' ' | sed 's/ $//')" = "$GF_HOST2" ] ||
    gf_fail "one.img should live on $GF_HOST2 only: $(gfwhere "$GF_DIR/one.img")"
[ "$(gfwhere "$GF_DIR/both.img" | wc -w)" -ge 2 ] || gf_fail "both.img needs two replicas"

# Replica selection: one.img can only come from node 2's vmiod.
expect 0 '^gfarm\+vmio$' "$VMIO_TEST_IO" "gfarm://$GF_DIR/one.img" backend
"$VMIO_CP" -q "gfarm://$GF_DIR/one.img" "$TMP/one.back" || fail "routed read of one.img"
cmp "$TMP/one.raw" "$TMP/one.back" || fail "one.img read through vmiod differs"
opened_by vmiod2 one.img || fail "vmiod2 (beside $GF_HOST2) did not serve one.img"
! opened_by vmiod1 one.img || fail "vmiod1 served one.img, which it holds no replica of"
ok "single replica on $GF_HOST2: served by the vmiod beside it"

"$VMIO_CP" -q "gfarm://$GF_DIR/both.img" "$TMP/both.back" || fail "routed read of both.img"
cmp "$TMP/both.raw" "$TMP/both.back" || fail "both.img read through vmiod differs"
opened_by vmiod1 both.img || opened_by vmiod2 both.img || fail "no vmiod served both.img"
ok "two replicas: served by a vmiod of a replica host"

# A route that names no replica host: libgfarm directly.
printf '%s vmio://127.0.0.1:%s/img %s\n' no-such-host.invalid "$PORT1" "$GF_DIR" > "$TMP/routes.none"
expect 0 '^gfarm$' "$VMIO_TEST_IO" "gfarm://$GF_DIR/one.img?routes=$TMP/routes.none" backend
expect 0 '^gfarm$' "$VMIO_TEST_IO" "gfarm://$GF_DIR/one.img?route=direct" backend
printf '# bad\nonly-two vmio://x/y\n' > "$TMP/bad-routes"
expect 1 "EINVAL.*bad-routes:2: expected" \
    "$VMIO_TEST_IO" "gfarm://$GF_DIR/one.img?routes=$TMP/bad-routes" backend
ok "no matching route: libgfarm directly; a broken routes file is named with its line"

# Writes through the vmiod: visible to gfls, gfexport and gfarm2fs after close.
make_dense "$TMP/new.raw" 8
"$VMIO_CP" -q "$TMP/new.raw" "gfarm://$GF_DIR/one.img" || fail "routed write of one.img"
grep -c "opened img/one.img (read-write" "$TMP/vmiod2.log" >/dev/null ||
    fail "the write did not go through vmiod2"
[ "$(gfls -l "$GF_DIR/one.img" | awk '{print $5}')" = "$(stat -c %s "$TMP/new.raw")" ] ||
    gf_fail "gfls -l size wrong after a write through vmiod"
gfexport_cmp "$TMP/new.raw" "$GF_DIR/one.img"
gf_mount "$TMP/mnt"
cmp "$TMP/new.raw" "$TMP/mnt/one.img" || fail "gfarm2fs shows other content"
gf_unmount "$TMP/mnt"
ok "write through vmiod: gfls -l, gfexport and gfarm2fs see it"

# Security of a Gfarm export: no way out through '..' or a Gfarm symlink.
gfmkdir "$GF_DIR-outside" 2>/dev/null || true
on_exit "gfrm -rf '$GF_DIR-outside' >/dev/null 2>&1"
gfreg "$TMP/one.raw" "$GF_DIR-outside/secret.img" || gf_fail "gfreg outside"
gfln -s "$GF_DIR-outside" "$GF_DIR/escape" || gf_fail "gfln -s"
expect 1 "escapes the export" "$VMIO_TEST_IO" "vmio://127.0.0.1:$PORT1/img/escape/secret.img" size
expect 1 "escapes the export" "$VMIO_TEST_IO" "vmio://127.0.0.1:$PORT1/img/../x" size
expect 1 "escapes the export" "$VMIO_TEST_IO" --create \
    "vmio://127.0.0.1:$PORT1/img/escape/created.img" size
! gfls "$GF_DIR-outside/created.img" >/dev/null 2>&1 || fail "a file was created outside"
expect 1 "does not exist" "$VMIO_TEST_IO" "vmio://127.0.0.1:$PORT1/img/nothing.img" size
ok "Gfarm export: '..' and symlinks out of it are refused, nothing created outside"

# Wrong vmiod secret: route=vmiod says so; auto falls back to libgfarm.
(umask 077; echo wrong-secret > "$TMP/wrong")
expect 1 "[Aa]uthentication" "$VMIO_TEST_IO" \
    "gfarm://$GF_DIR/one.img?route=vmiod&secret-file=$TMP/wrong" size
expect 0 '^gfarm$' "$VMIO_TEST_IO" "gfarm://$GF_DIR/one.img?secret-file=$TMP/wrong" backend

# vmiod down: libgfarm directly, same bytes; route=vmiod fails clearly.
stop_pid "$PID2" || true
expect 0 '^gfarm$' "$VMIO_TEST_IO" "gfarm://$GF_DIR/one.img" backend
"$VMIO_CP" -q "gfarm://$GF_DIR/one.img" "$TMP/one.back2" || fail "fallback read"
cmp "$TMP/new.raw" "$TMP/one.back2" || fail "fallback read differs"
expect 1 "ECONNREFUSED|connect" "$VMIO_TEST_IO" "gfarm://$GF_DIR/one.img?route=vmiod" size
ok "vmiod down: libgfarm fallback; route=vmiod reports the refused connection"
stop_pid "$PID1" || true
