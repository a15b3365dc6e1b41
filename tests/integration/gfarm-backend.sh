#!/bin/bash
# gfarm:// through libgfarm on a real Gfarm (PostgreSQL + gfmd + two gfsd):
# create, write, read, truncate, flush with the helper processes and
# in-process, checked with Gfarm's own tools (gfls -l, gfexport into a file,
# gfarm2fs); vmio-cp and the nbdkit plugin in both directions; clear errors
# for a missing file, bad options and a wrong shared key.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/gfarm-env.sh"
[ -n "${VMIO_GFARM_HELPER:-}" ] || skip "libvmio was built without gfarm:// (libgfarm-dev missing)"
gfarm_up
G=gfarm://$GF_DIR

make_dense "$TMP/src.raw" 24
SIZE=$(stat -c %s "$TMP/src.raw")

# gfexport_cmp FILE GFARM-PATH: Gfarm's own reader agrees (into a file:
# gfexport into a pipe is not reliable).
gfexport_cmp() {
    gfexport "$2" > "$TMP/export.out" || gf_fail "gfexport $2 failed"
    cmp "$1" "$TMP/export.out" || gf_fail "gfexport $2 differs from $1"
}
gfls_size() { gfls -l "$1" | awk '{print $5}'; }

for mode in "helpers=4" "helpers=1" "helpers=0"; do
    name=${mode/=/}
    "$VMIO_CP" -q "$TMP/src.raw" "$G/$name.img?$mode" || gf_fail "vmio-cp into $G/$name.img?$mode"
    [ "$(gfls_size "$GF_DIR/$name.img")" = "$SIZE" ] || gf_fail "gfls -l: wrong size after $mode"
    gfexport_cmp "$TMP/src.raw" "$GF_DIR/$name.img"
    "$VMIO_CP" -q "$G/$name.img?$mode" "$TMP/back.raw" || gf_fail "vmio-cp out of $G/$name.img"
    cmp "$TMP/src.raw" "$TMP/back.raw" || fail "round trip through $mode differs"
    ok "$mode: vmio-cp in and out, gfls -l size, gfexport content"
done
expect 0 '^gfarm$' "$VMIO_TEST_IO" "$G/helpers4.img" backend
"$VMIO_CP" -q --verify "$G/helpers4.img" "$G/copy.img" || gf_fail "gfarm -> gfarm copy"
gfexport_cmp "$TMP/src.raw" "$GF_DIR/copy.img"
ok "gfarm:// -> gfarm:// with --verify"

# Create, grow, write at offsets, read back, shrink; metadata after close.
expect 0 "" "$VMIO_TEST_IO" --create "$G/new.img" truncate 3145728
expect 0 "write 4096 bytes at 1048576" "$VMIO_TEST_IO" --rw "$G/new.img" write 1048576 4096
expect 0 "" "$VMIO_TEST_IO" --rw "$G/new.img" flush
[ "$(gfls_size "$GF_DIR/new.img")" = 3145728 ] || gf_fail "gfls -l: new.img is not 3 MiB"
gfexport "$GF_DIR/new.img" > "$TMP/new.out"
[ "$(od -An -tx1 -j 1048576 -N 4 "$TMP/new.out" | tr -d ' ')" = a5a5a5a5 ] ||
    gf_fail "gfexport does not show the bytes written at 1 MiB"
[ "$(od -An -tx1 -j 1048572 -N 4 "$TMP/new.out" | tr -d ' ')" = 00000000 ] ||
    gf_fail "bytes before the write are not zero"
expect 0 "read 4096 bytes at 1048576" "$VMIO_TEST_IO" "$G/new.img" read 1048576 4096
expect 1 "EINVAL.*beyond the end" "$VMIO_TEST_IO" "$G/new.img" read 3145728 1
expect 0 "" "$VMIO_TEST_IO" --rw "$G/new.img" truncate 1048576
expect 0 "^1048576$" "$VMIO_TEST_IO" "$G/new.img" size
[ "$(gfls_size "$GF_DIR/new.img")" = 1048576 ] || gf_fail "gfls -l after truncate"
expect 1 "EBADF|EROFS|EPERM|read-only" "$VMIO_TEST_IO" "$G/new.img" write 0 512
ok "create, truncate, write at an offset, flush, shrink: seen by gfls and gfexport"

# gfarm2fs sees what libvmio wrote, and libvmio reads what gfarm2fs wrote.
gf_mount "$TMP/mnt"
cmp "$TMP/src.raw" "$TMP/mnt/helpers4.img" || fail "gfarm2fs shows different content"
head -c 5M /dev/urandom > "$TMP/fuse.raw"
cp "$TMP/fuse.raw" "$TMP/mnt/fuse.img"
gf_unmount "$TMP/mnt"
"$VMIO_CP" -q "$G/fuse.img" "$TMP/fuse.back" || gf_fail "vmio-cp of a file written by gfarm2fs"
cmp "$TMP/fuse.raw" "$TMP/fuse.back" || fail "file written through gfarm2fs reads differently"
ok "gfarm2fs and gfarm:// agree in both directions"

# The nbdkit plugin serves gfarm:// images, read and write.
if [ -n "${VMIO_PLUGIN:-}" ] && command -v nbdkit >/dev/null && command -v qemu-img >/dev/null; then
    "$VMIO_TEST_IO" --create "$G/nbd.img" truncate "$SIZE" >/dev/null || gf_fail "create nbd.img"
    preload=$(asan_preload)
    env ${preload:+LD_PRELOAD=$preload} nbdkit -f -U "$TMP/nbd.sock" "$VMIO_PLUGIN" \
        "uri=$G/nbd.img" >"$TMP/nbdkit.log" 2>&1 &
    nbdkit_pid=$!
    track_pid $nbdkit_pid
    wait_until 20 test -S "$TMP/nbd.sock" || fail "nbdkit did not start"
    nbd="nbd+unix:///?socket=$TMP/nbd.sock"
    qemu-img convert -n -f raw -O raw "$TMP/src.raw" "$nbd" || fail "qemu-img convert into nbd"
    qemu-img compare -f raw -F raw "$TMP/src.raw" "$nbd" >/dev/null || fail "qemu-img compare"
    qemu-img convert -f raw -O raw "$nbd" "$TMP/nbd.back" || fail "qemu-img convert out of nbd"
    cmp "$TMP/src.raw" "$TMP/nbd.back" || fail "read back over NBD differs"
    stop_pid "$nbdkit_pid" 20 || fail "nbdkit exited with an error"
    gfexport_cmp "$TMP/src.raw" "$GF_DIR/nbd.img"
    ok "nbdkit plugin: qemu-img convert into gfarm:// over NBD, compare, gfexport"
else
    echo "note: nbdkit plugin part not run (plugin, nbdkit or qemu-img missing)"
fi

# Clear errors.
expect 1 "ENOENT.*$GF_DIR/missing.img" "$VMIO_TEST_IO" "$G/missing.img" size
expect 1 "EINVAL.*helpers=99" "$VMIO_TEST_IO" "$G/helpers4.img?helpers=99" size
expect 1 "EINVAL.*route=sideways" "$VMIO_TEST_IO" "$G/helpers4.img?route=sideways" size
expect 1 "EINVAL.*bogus" "$VMIO_TEST_IO" "$G/helpers4.img?bogus=1" size
expect 1 "EINVAL.*absolute" "$VMIO_TEST_IO" "gfarm://" size
VMIO_GFARM_HELPER=$TMP/no-such-helper expect 1 "cannot start.*no-such-helper" \
    "$VMIO_TEST_IO" "$G/helpers4.img" size

# A client with another shared key is refused by gfmd: say so, touch nothing.
sed "s|^shared_key_file .*|shared_key_file $TMP/wrong.key|" "$GFARM_CONFIG_FILE" > "$TMP/wrong.conf"
GFARM_CONFIG_FILE=$TMP/wrong.conf gfkey -f -p 3600 >/dev/null 2>&1 ||
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/wrong.key"
for mode in helpers=2 helpers=0; do
    GFARM_CONFIG_FILE=$TMP/wrong.conf expect 1 "[Aa]uthentication" \
        "$VMIO_TEST_IO" "$G/helpers4.img?$mode" size
    GFARM_CONFIG_FILE=$TMP/wrong.conf expect 1 "[Aa]uthentication" \
        "$VMIO_CP" -q "$TMP/fuse.raw" "$G/helpers4.img?$mode"
done
gfexport_cmp "$TMP/src.raw" "$GF_DIR/helpers4.img"
ok "wrong shared key: clear error, image untouched"

# No helper process outlives the process that started it.
sleep 0.2
if pgrep -P 1 -f "^vmio-gfarm-helper" >/dev/null; then
    pgrep -a -P 1 -f vmio-gfarm-helper >&2
    fail "orphaned helper processes left behind"
fi
ok "no orphaned helper process"
