#!/bin/bash
# Error paths that involve a running vmiod: unknown export, wrong secret,
# secret files readable by others, path traversal and symlink escapes, a
# read-only export, and I/O beyond the end of an image. Each case asserts
# the exit status and the message text.
. "$(dirname "$0")/functions.sh"
: "${VMIO_TEST_IO:?VMIO_TEST_IO must point at the built vmio-test-io}"

make_secret "$TMP/secret"
make_secret "$TMP/other-secret"
mkdir "$TMP/export" "$TMP/ro" "$TMP/outside"
echo "outside the export" > "$TMP/outside/secret.txt"
make_image "$TMP/src.raw" 4
cp "$TMP/src.raw" "$TMP/export/disk.raw"
cp "$TMP/src.raw" "$TMP/ro/disk.raw"
ln -s "$TMP/outside/secret.txt" "$TMP/export/escape-file"
ln -s "$TMP/outside" "$TMP/export/escape-dir"
ln -s ../outside/secret.txt "$TMP/export/escape-rel"
start_vmiod srv --export "img=$TMP/export" --export "ro=$TMP/ro,ro" --secret-file "$TMP/secret"
H="vmio://127.0.0.1:$VMIOD_PORT"
export VMIO_SECRET_FILE="$TMP/secret"
SIZE=$(stat -c %s "$TMP/src.raw")

# ---- exports and authentication
expect 1 "vmio_open: .*(unknown export|no export).*nosuch" \
    "$VMIO_CP" -q "$H/nosuch/disk.raw" "$TMP/dst.raw"
expect 1 "vmio_open: .*does not exist" "$VMIO_CP" -q "$H/img/missing.raw" "$TMP/dst.raw"
expect 1 "vmio_open: .*authentication failed" \
    env VMIO_SECRET_FILE="$TMP/other-secret" "$VMIO_CP" -q "$H/img/disk.raw" "$TMP/dst.raw"
cp "$TMP/secret" "$TMP/open-secret"
chmod 0644 "$TMP/open-secret"
expect 1 "vmio_open: .*secret file .*open-secret is accessible by group or others" \
    env VMIO_SECRET_FILE="$TMP/open-secret" "$VMIO_CP" -q "$H/img/disk.raw" "$TMP/dst.raw"
expect 1 "vmio_open: .*secret file .*no-such-secret.*No such file" \
    "$VMIO_CP" -q "$H/img/disk.raw?secret-file=$TMP/no-such-secret" "$TMP/dst.raw"
# vmiod refuses to start with such a secret file.
rc=0
"$VMIOD" --listen 127.0.0.1:0 --foreground --export "img=$TMP/export" \
    --secret-file "$TMP/open-secret" >"$TMP/bad-secret.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "vmiod started with a secret file of mode 0644"
grep -q "accessible by group or others" "$TMP/bad-secret.out" ||
    { cat "$TMP/bad-secret.out"; fail "vmiod did not say why it refused the secret file"; }
ok "vmiod refuses a mode 0644 secret file (exit $rc)"
[ ! -e "$TMP/dst.raw" ] || fail "a failed copy left $TMP/dst.raw behind"
# vmiod refuses a mode it does not know.
expect 1 "vmiod: bad --splice 'sometimes' \\(expected auto, on or off\\)" \
    timeout 10 "$VMIOD" --listen 127.0.0.1:0 --foreground --export "img=$TMP/export" \
    --secret-file "$TMP/secret" --splice sometimes

# ---- nothing outside the export can be reached
for p in "../outside/secret.txt" "%2e%2e/outside/secret.txt" "a/../../outside/secret.txt" \
         "..%2foutside%2fsecret.txt"; do
    expect 1 "vmio_open: .*escapes the export" "$VMIO_CP" -q "$H/img/$p" "$TMP/dst.raw"
done
expect 1 "vmio_open: .*escapes the export" "$VMIO_CP" -q "$H/img/../../../../etc/passwd" "$TMP/dst.raw"
for p in escape-file escape-dir/secret.txt escape-rel; do
    expect 1 "vmio_open: .*escapes the export" "$VMIO_CP" -q "$H/img/$p" "$TMP/dst.raw"
done
# Writing through a traversal must not create anything outside.
expect 1 "vmio_open: .*escapes the export" "$VMIO_CP" -q "$TMP/src.raw" "$H/img/../outside/new.raw"
expect 1 "vmio_open: .*escapes the export" "$VMIO_CP" -q "$TMP/src.raw" "$H/img/escape-dir/new.raw"
[ ! -e "$TMP/outside/new.raw" ] || fail "a file was created outside the export"
[ "$(cat "$TMP/outside/secret.txt")" = "outside the export" ] || fail "a file outside was modified"
ok "no traversal reached outside the export"

# ---- read-only export
expect 1 "cannot open destination .*vmio_open: .*read-only" \
    "$VMIO_CP" -q "$TMP/src.raw" "$H/ro/new.raw"
[ ! -e "$TMP/ro/new.raw" ] || fail "a file was created in the read-only export"
make_dense "$TMP/other.raw" 4
expect 1 "cannot open destination .*vmio_open: .*read-only" \
    "$VMIO_CP" -q "$TMP/other.raw" "$H/ro/disk.raw"
cmp "$TMP/src.raw" "$TMP/ro/disk.raw" || fail "the read-only export was modified"
expect 1 "EROFS: vmio_open: .*read-only" "$VMIO_TEST_IO" --rw "$H/ro/disk.raw" write 0 4096
"$VMIO_CP" -q "$H/ro/disk.raw" "$TMP/from-ro.raw"
cmp "$TMP/src.raw" "$TMP/from-ro.raw" || fail "reading the read-only export gave other data"
ok "read-only export: reads work, writes are refused"

# ---- I/O beyond the end of the image, and writes through a read-only handle
expect 0 "^$SIZE\$" "$VMIO_TEST_IO" "$H/img/disk.raw" size
expect 0 "read 4096 bytes at $(( SIZE - 4096 ))" \
    "$VMIO_TEST_IO" "$H/img/disk.raw" read $(( SIZE - 4096 )) 4096
expect 1 "EINVAL: vmio_pread: range $(( SIZE - 512 ))\\+1024 is beyond the end of the image \\(size $SIZE\\)" \
    "$VMIO_TEST_IO" "$H/img/disk.raw" read $(( SIZE - 512 )) 1024
expect 1 "EINVAL: vmio_pread: .*beyond the end" "$VMIO_TEST_IO" "$H/img/disk.raw" read "$SIZE" 1
expect 1 "EINVAL: vmio_pread: .*overflows" \
    "$VMIO_TEST_IO" "$H/img/disk.raw" read 0xffffffffffff0000 4096
expect 1 "EINVAL: vmio_pwrite: .*beyond the end" \
    "$VMIO_TEST_IO" --rw "$H/img/disk.raw" write "$SIZE" 4096
expect 1 "EBADF: vmio_pwrite: image was opened read-only" \
    "$VMIO_TEST_IO" "$H/img/disk.raw" write 0 4096
expect 1 "EINVAL: vmio_block_status: .*beyond the end" \
    "$VMIO_TEST_IO" "$H/img/disk.raw" block-status "$SIZE" 4096
cmp "$TMP/src.raw" "$TMP/export/disk.raw" || fail "a refused write modified the image"
# The same checks hold for the embedded default.
expect 1 "EINVAL: vmio_pread: .*beyond the end" "$VMIO_TEST_IO" "$TMP/src.raw" read "$SIZE" 1
ok "out-of-range requests are refused"

# The server survived all of this.
kill -0 "$VMIOD_PID" || fail "vmiod died"
"$VMIO_CP" -q "$H/img/disk.raw" "$TMP/final.raw"
cmp "$TMP/src.raw" "$TMP/final.raw" || fail "final copy differs"
stop_pid "$VMIOD_PID" || fail "vmiod exited with status $? on SIGTERM"
ok "vmiod still serves and stops cleanly"
