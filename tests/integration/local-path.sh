#!/bin/bash
# The same-host data path (URI option local=) against a vmiod in its own
# process: the client takes over vmiod's descriptor and reads and writes
# the image itself; exports that refuse it, a vmiod in another pid
# namespace and a client without the right to vmiod's descriptors fall
# back to the network (auto) or fail with the reason (on).
. "$(dirname "$0")/functions.sh"
: "${VMIO_TEST_IO:?VMIO_TEST_IO must point at the built vmio-test-io}"

make_secret "$TMP/secret"
export VMIO_SECRET_FILE="$TMP/secret"
mkdir "$TMP/export" "$TMP/ro"
make_dense "$TMP/export/disk.raw" 8
cp "$TMP/export/disk.raw" "$TMP/ro/disk.raw"
SIZE=$(stat -c %s "$TMP/export/disk.raw")
start_vmiod srv --export "img=$TMP/export" --export "ro=$TMP/ro,ro" \
    --export "nl=$TMP/export,nolocal" --secret-file "$TMP/secret"
H="vmio://127.0.0.1:$VMIOD_PORT"
SRV_PID=$VMIOD_PID

# dump URI OUT: the whole image to OUT; the stats line goes to $TMP/stats.
dump() {
    "$VMIO_TEST_IO" "$1" dump 0 "$SIZE" >"$2" 2>"$TMP/stats" ||
        { cat "$TMP/stats" >&2; fail "dump of $1 failed"; }
}

# ---- taken over: reads and writes are the client's own
dump "$H/img/disk.raw?local=on" "$TMP/out.raw"
cmp "$TMP/out.raw" "$TMP/export/disk.raw" || fail "local read differs from the image"
grep -q "transport=local (pidfd_getfd of pid $SRV_PID, found through tcp" "$TMP/stats" ||
    { cat "$TMP/stats"; fail "the read did not take vmiod's descriptor"; }
grep -q " inline=0" "$TMP/stats" || { cat "$TMP/stats"; fail "data went through vmiod"; }
ok "local=on reads vmiod's open image itself"

head -c 3M /dev/urandom >"$TMP/new.bin"
"$VMIO_TEST_IO" --rw "$H/img/disk.raw?local=on" load 1048576 3145728 <"$TMP/new.bin" \
    2>"$TMP/stats" || { cat "$TMP/stats" >&2; fail "local write failed"; }
grep -q "transport=local" "$TMP/stats" || { cat "$TMP/stats"; fail "the write was not local"; }
cmp <(tail -c +1048577 "$TMP/export/disk.raw" | head -c 3145728) "$TMP/new.bin" ||
    fail "the local write is not in the image"
# Through vmiod, the same bytes.
dump "$H/img/disk.raw?local=off" "$TMP/out.raw"
cmp "$TMP/out.raw" "$TMP/export/disk.raw" || fail "vmiod serves other bytes than were written"
ok "local=on writes land in the image and vmiod serves them"

"$VMIO_CP" -q --verify "$TMP/new.bin" "$H/img/copy.raw?local=on" ||
    fail "vmio-cp into a local=on URI failed"
cmp "$TMP/new.bin" "$TMP/export/copy.raw" || fail "vmio-cp wrote other bytes"
ok "vmio-cp with local=on creates and fills an image"

# ---- a read-only export hands out a read-only descriptor
dump "$H/ro/disk.raw?local=on" "$TMP/out.raw"
cmp "$TMP/out.raw" "$TMP/ro/disk.raw" || fail "local read of the read-only export differs"
expect 1 "EROFS: vmio_open: .*read-only" "$VMIO_TEST_IO" --rw "$H/ro/disk.raw?local=on" flush

# ---- refused by the export
expect 1 "EOPNOTSUPP: vmio_open: .*refused the local data path: export 'nl' has no local data path" \
    "$VMIO_TEST_IO" "$H/nl/disk.raw?local=on" size
dump "$H/nl/disk.raw?local=auto" "$TMP/out.raw"
cmp "$TMP/out.raw" "$TMP/export/disk.raw" || fail "fallback read differs"
grep -q "transport=tcp.*no local path: .*export 'nl' has no local data path" "$TMP/stats" ||
    { cat "$TMP/stats"; fail "the fallback does not say why"; }
ok "local=auto falls back to vmiod with the reason"
expect 1 "EINVAL: vmio_open: .*unknown local 'yes' \\(off, auto, on\\)" \
    "$VMIO_TEST_IO" "$H/img/disk.raw?local=yes" size

# ---- vmiod in another pid namespace: the pid it names is not ours
if unshare --pid --fork --kill-child true 2>/dev/null; then
    VMIOD_WRAP=(unshare --pid --fork --kill-child)
    start_vmiod ns --export "img=$TMP/export" --secret-file "$TMP/secret"
    VMIOD_WRAP=()
    HN="vmio://127.0.0.1:$VMIOD_PORT"
    expect 1 "EXDEV: vmio_open: .*the server runs in another pid namespace" \
        "$VMIO_TEST_IO" "$HN/img/disk.raw?local=on" size
    dump "$HN/img/disk.raw?local=auto" "$TMP/out.raw"
    cmp "$TMP/out.raw" "$TMP/export/disk.raw" || fail "read from the namespaced vmiod differs"
    grep -q "no local path: the server runs in another pid namespace" "$TMP/stats" ||
        { cat "$TMP/stats"; fail "the namespace fallback does not say why"; }
    ok "a vmiod in another pid namespace is reached over TCP"
else
    echo "note: unshare --pid not permitted here; the pid namespace case is not run"
fi

# ---- a client the kernel does not let at vmiod's descriptors
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
   setpriv --reuid=65534 --regid=65534 --clear-groups "$VMIO_TEST_IO" 2>/dev/null; [ $? -eq 2 ]; then
    chmod 711 "$TMP"
    install -m 0600 -o 65534 -g 65534 "$TMP/secret" "$TMP/nobody-secret"
    chmod 0644 "$TMP/export/disk.raw"
    as_nobody() {
        setpriv --reuid=65534 --regid=65534 --clear-groups \
            env VMIO_SECRET_FILE="$TMP/nobody-secret" "$@"
    }
    expect 1 "vmio_open: .*cannot take the server's descriptor \\(pidfd_getfd: .*; open /proc/$SRV_PID/fd/[0-9]+\\)" \
        as_nobody "$VMIO_TEST_IO" "$H/img/disk.raw?local=on" size
    as_nobody "$VMIO_TEST_IO" "$H/img/disk.raw?local=auto" dump 0 "$SIZE" \
        >"$TMP/out.raw" 2>"$TMP/stats" || { cat "$TMP/stats" >&2; fail "unprivileged dump failed"; }
    cmp "$TMP/out.raw" "$TMP/export/disk.raw" || fail "unprivileged fallback read differs"
    grep -q "transport=tcp.*no local path: cannot take the server's descriptor" "$TMP/stats" ||
        { cat "$TMP/stats"; fail "the unprivileged fallback does not say why"; }
    ok "an unprivileged client is refused the descriptor by the kernel and reads over TCP"
else
    echo "note: not root or no setpriv; the unprivileged client case is not run"
fi
echo "PASS"
