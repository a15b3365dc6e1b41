#!/bin/bash
# The nbdkit plugin with Debian's nbdkit and qemu-img as real peers:
# qemu-img convert into and out of a file:// and a vmio:// image served over
# NBD (unix socket), qemu-img compare, nbdcopy with several connections,
# extents seen by nbdinfo, and a read-only export.
. "$(dirname "$0")/functions.sh"
[ -n "${VMIO_PLUGIN:-}" ] || skip "the nbdkit plugin was not built (nbdkit-plugin-dev missing)"
require_cmd nbdkit qemu-img cmp

PRELOAD=$(asan_preload)

# start_nbdkit NAME [nbdkit options] -- PLUGIN-ARGS...: serve on $TMP/NAME.sock.
start_nbdkit() {
    local name=$1 opts=()
    shift
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    LD_PRELOAD=$PRELOAD ASAN_OPTIONS=detect_leaks=0 \
        nbdkit -f -U "$TMP/$name.sock" "${opts[@]}" "$VMIO_PLUGIN" "$@" \
        >"$TMP/nbdkit-$name.log" 2>&1 &
    track_pid $!
    wait_until 20 test -S "$TMP/$name.sock" || fail "nbdkit $name did not start"
    NBD="nbd+unix:///?socket=$TMP/$name.sock"
}

make_image "$TMP/src.raw" 64
SIZE=$(stat -c %s "$TMP/src.raw")

# roundtrip LABEL NBD-URI BACKING-FILE: convert in, compare, convert out.
roundtrip() {
    local label=$1 nbd=$2 backing=$3
    qemu-img convert -n -f raw -O raw "$TMP/src.raw" "$nbd"
    cmp "$TMP/src.raw" "$backing" || fail "$label: image written through NBD differs"
    qemu-img compare -f raw -F raw "$TMP/src.raw" "$nbd" >/dev/null ||
        fail "$label: qemu-img compare reports a difference"
    rm -f "$TMP/out.raw" "$TMP/out.qcow2"
    qemu-img convert -f raw -O raw "$nbd" "$TMP/out.raw"
    cmp "$TMP/src.raw" "$TMP/out.raw" || fail "$label: image read through NBD differs"
    qemu-img convert -f raw -O qcow2 "$nbd" "$TMP/out.qcow2"
    qemu-img compare -f raw -F qcow2 "$TMP/src.raw" "$TMP/out.qcow2" >/dev/null ||
        fail "$label: qcow2 converted from NBD differs"
    ok "$label: qemu-img convert in and out, qemu-img compare"
    if command -v nbdinfo >/dev/null; then
        nbdinfo --map "$nbd" > "$TMP/map"
        grep -q "hole" "$TMP/map" || { cat "$TMP/map"; fail "$label: no hole in the extent map"; }
        grep -q "data" "$TMP/map" || { cat "$TMP/map"; fail "$label: no data in the extent map"; }
        ok "$label: nbdinfo --map shows data and holes"
    fi
    if command -v nbdcopy >/dev/null; then
        rm -f "$TMP/copy.raw"
        nbdcopy --connections=4 --requests=8 "$nbd" "$TMP/copy.raw"
        cmp "$TMP/src.raw" "$TMP/copy.raw" || fail "$label: nbdcopy result differs"
        ok "$label: nbdcopy over 4 connections"
    fi
}

# file:// (the embedded default).
truncate -s "$SIZE" "$TMP/dst.raw"
start_nbdkit file -- "uri=file://$TMP/dst.raw"
roundtrip "file://" "$NBD" "$TMP/dst.raw"

# vmio:// through vmiod.
make_secret "$TMP/secret"
mkdir "$TMP/export"
truncate -s "$SIZE" "$TMP/export/disk.raw"
start_vmiod srv --export "img=$TMP/export" --secret-file "$TMP/secret"
start_nbdkit vmio -- "uri=vmio://127.0.0.1:$VMIOD_PORT/img/disk.raw" "secret-file=$TMP/secret"
roundtrip "vmio://" "$NBD" "$TMP/export/disk.raw"

# Read-only: nbdkit -r opens the image read-only; writes are refused.
start_nbdkit ro -r -- "uri=vmio://127.0.0.1:$VMIOD_PORT/img/disk.raw" "secret-file=$TMP/secret"
qemu-img compare -f raw -F raw "$TMP/src.raw" "$NBD" >/dev/null || fail "read-only export differs"
if command -v qemu-io >/dev/null; then
    expect 1 "Permission denied|Operation not permitted|read-only" \
        qemu-io -f raw -c "write -P 0x55 0 4k" "$NBD"
fi
cmp "$TMP/src.raw" "$TMP/export/disk.raw" || fail "read-only export was modified"
ok "read-only export stays unmodified"

# A missing uri= is a configuration error with a useful message.
expect 1 "uri parameter is required" env LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=detect_leaks=0 nbdkit -f -U "$TMP/bad.sock" "$VMIO_PLUGIN"
