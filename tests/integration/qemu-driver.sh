#!/bin/bash
# The QEMU block driver of examples/qemu/ inside Debian's QEMU 7.2 tools, as
# built by scripts/qemu-build.sh: qemu-img create, convert in and out,
# compare, info, map and resize, and qemu-io reads and writes (unaligned,
# vectored, FUA, asynchronous), discard and write-zeroes, against vmio://
# (vmiod on loopback), vmio:/path and vmio:file:// images, qcow2 on top of
# vmio://, --image-opts, read-only exports and error messages; gfarm:// and
# vmio:gfarm:// too when a Gfarm is at hand (see the gfarm:// part below).
#
# The QEMU binaries come from $VMIO_QEMU_BUILD (default
# ${VMIO_QEMU_DIR:-build-qemu}/qemu-build, relative to the source tree); the
# test is skipped when they are not there. They load the libvmio of the
# build under test (the one vmiod comes from).
. "$(dirname "$0")/functions.sh"
require_cmd cmp

SRC_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
QBUILD=${VMIO_QEMU_BUILD:-${VMIO_QEMU_DIR:-$SRC_ROOT/build-qemu}/qemu-build}
QEMU_IMG=$QBUILD/qemu-img
QEMU_IO=$QBUILD/qemu-io
if [ ! -x "$QEMU_IMG" ] || [ ! -x "$QEMU_IO" ]; then
    skip "QEMU with the vmio driver is not built in $QBUILD (run scripts/qemu-build.sh, or set VMIO_QEMU_DIR or VMIO_QEMU_BUILD)"
fi

# QEMU runs with the libvmio this test is about (vmiod's build), not the one
# it was linked with, and with the sanitizer runtime preloaded when that
# libvmio is sanitized (QEMU itself is not).
QENV=()
LIBDIR=$(dirname "$VMIOD")/../libvmio
if [ -e "$LIBDIR/libvmio.so.0" ]; then
    LIBDIR=$(cd "$LIBDIR" && pwd)
    QENV+=("LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
fi
PRELOAD=$(asan_preload)
if [ -n "$PRELOAD" ]; then
    QENV+=("LD_PRELOAD=$PRELOAD" "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi
qimg() { env "${QENV[@]}" "$QEMU_IMG" "$@"; }
qemu_io() { env "${QENV[@]}" "$QEMU_IO" "$@"; }

qimg --help | grep -q 'Supported formats:.* vmio' || fail "$QEMU_IMG has no vmio driver"

# qio TARGET CMD...: qemu-io -f raw with one -c per CMD; fails on any
# failed command or pattern mismatch. --image-opts as TARGET's first word
# passes TARGET as image options.
qio() {
    local target=$1 args=() out rc=0
    shift
    for c in "$@"; do args+=(-c "$c"); done
    case $target in
    driver=*) out=$(qemu_io --image-opts "${args[@]}" "$target" 2>&1) || rc=$? ;;
    *) out=$(qemu_io -f raw "${args[@]}" "$target" 2>&1) || rc=$? ;;
    esac
    if [ "$rc" -ne 0 ] ||
        printf '%s\n' "$out" | grep -Eq 'Pattern verification failed| failed: |^qemu-io: '; then
        printf '%s\n' "$out" >&2
        fail "qemu-io on $target exited $rc: $*"
    fi
}

# The same qemu-io commands on an image and on a local reference copy (by
# QEMU's own file driver): afterwards both must be identical.
IO_CMDS=(
    "write -P 0x5a 12345 7777"                 # unaligned
    "write -f -P 0x33 1048575 65537"           # FUA, crosses a MiB boundary
    "writev -P 0x11 2000001 4096 512 1000"     # vectored
    "aio_write -P 0x71 3145728 65536"          # two in flight
    "aio_write -P 0x72 3211264 65536"
    "aio_flush"
    "write -z 4000000 100000"                  # write zeroes
    "write -z -u 4194304 1048576"              # write zeroes, may unmap
    "discard 8388608 1048576"
    "flush"
)
IO_CHECKS=(
    "read -P 0x5a 12345 7777"
    "read -P 0x33 1048575 65537"
    "read -P 0x11 2000001 5608"
    "aio_read -P 0x71 3145728 65536"
    "aio_read -P 0x72 3211264 65536"
    "aio_flush"
    "read -P 0 4000000 100000"
    "read -P 0 4194304 1048576"
    "read -v 0 1"
)

make_image "$TMP/src.raw" 64
SIZE=$(stat -c %s "$TMP/src.raw")

# info_size TARGET: the virtual size qemu-img info reports, in bytes.
info_size() {
    qimg info -f raw "$1" | sed -n 's/^virtual size: .*(\([0-9]*\) bytes)$/\1/p'
}

# roundtrip LABEL BASE [nosparse]: images under the URI prefix BASE
# (vmio://host/exp, vmio:/dir, gfarm:///dir), checked through QEMU only.
# nosparse: the backend reports no holes (no block status).
roundtrip() {
    local label=$1 base=$2 sparse=${3:-sparse} s

    # qemu-img create, info.
    qimg create -q -f raw "$base/new.raw" 16M
    s=$(info_size "$base/new.raw")
    [ "$s" = 16777216 ] || fail "$label: qemu-img info says size '$s' after create 16M"
    qio "$base/new.raw" "read -P 0 0 16M"
    ok "$label: qemu-img create, info (16 MiB of zeroes)"

    # convert in (creates the image), compare, convert out.
    qimg convert -f raw -O raw "$TMP/src.raw" "$base/disk.raw"
    qimg compare -q -f raw -F raw "$TMP/src.raw" "$base/disk.raw" ||
        fail "$label: qemu-img compare reports a difference after convert in"
    rm -f "$TMP/out.raw"
    qimg convert -f raw -O raw "$base/disk.raw" "$TMP/out.raw"
    cmp "$TMP/src.raw" "$TMP/out.raw" || fail "$label: image converted out differs"
    ok "$label: qemu-img convert in and out, compare"

    # Into an existing image (-n), from qcow2.
    rm -f "$TMP/src.qcow2"
    qimg convert -f raw -O qcow2 "$TMP/src.raw" "$TMP/src.qcow2"
    qimg create -q -f raw "$base/n.raw" "$SIZE"
    qimg convert -n -f qcow2 -O raw "$TMP/src.qcow2" "$base/n.raw"
    qimg compare -q -f raw -F raw "$TMP/src.raw" "$base/n.raw" ||
        fail "$label: convert -n from qcow2 differs"
    ok "$label: qemu-img convert -n from qcow2"

    # Extents: the holes of the source are holes of the copy.
    qimg map -f raw --output=json "$base/disk.raw" > "$TMP/map.json"
    grep -q '"data": true' "$TMP/map.json" || { cat "$TMP/map.json"; fail "$label: no data in qemu-img map"; }
    if [ "$sparse" = sparse ]; then
        grep -q '"data": false' "$TMP/map.json" || { cat "$TMP/map.json"; fail "$label: no hole in qemu-img map"; }
        ok "$label: qemu-img map shows data and holes"
    fi

    # qemu-io: the same commands on the image and on a local reference.
    cp "$TMP/src.raw" "$TMP/ref.raw"
    qio "$TMP/ref.raw" "${IO_CMDS[@]}"
    qio "$base/disk.raw" "${IO_CMDS[@]}"
    qio "$base/disk.raw" "${IO_CHECKS[@]}"
    qimg compare -q -f raw -F raw "$TMP/ref.raw" "$base/disk.raw" ||
        fail "$label: image differs from the reference after the qemu-io writes"
    ok "$label: qemu-io writes (unaligned, FUA, vectored, async), zeroes, discard"

    # Resize: grow (new space reads as zeroes), then shrink.
    qimg resize -q -f raw "$base/disk.raw" +1M
    s=$(info_size "$base/disk.raw")
    [ "$s" = $(( SIZE + 1048576 )) ] || fail "$label: size '$s' after resize +1M"
    qio "$base/disk.raw" "read -P 0 $SIZE 1M"
    qimg resize -q -f raw --shrink "$base/disk.raw" 32M
    s=$(info_size "$base/disk.raw")
    [ "$s" = 33554432 ] || fail "$label: size '$s' after resize --shrink 32M"
    ok "$label: qemu-img resize grow and shrink, info shows the size"

    # qcow2 on top: a format driver over the protocol.
    qimg convert -f raw -O qcow2 "$TMP/src.raw" "$base/disk.qcow2"
    qimg check -q -f qcow2 "$base/disk.qcow2" || fail "$label: qemu-img check on qcow2 failed"
    qimg compare -q -f raw -F qcow2 "$TMP/src.raw" "$base/disk.qcow2" ||
        fail "$label: qcow2 image differs"
    qio "$base/new.raw" "write -P 0x42 0 64k"
    qimg create -q -f qcow2 -b "$base/new.raw" -F raw "$base/overlay.qcow2"
    qemu_io -f qcow2 -c "read -P 0x42 0 64k" -c "write -P 0x43 64k 64k" \
        -c "read -P 0x43 64k 64k" "$base/overlay.qcow2" > "$TMP/overlay.out" 2>&1 ||
        { cat "$TMP/overlay.out"; fail "$label: qcow2 overlay with a backing file failed"; }
    # A backing file named relative to the overlay (the driver's dirname).
    qimg create -q -f qcow2 -b new.raw -F raw "$base/rel.qcow2"
    qemu_io -f qcow2 -c "read -P 0x42 0 64k" "$base/rel.qcow2" > "$TMP/rel.out" 2>&1 ||
        { cat "$TMP/rel.out"; fail "$label: relative backing file name not resolved"; }
    ok "$label: qcow2 image, qcow2 overlays with absolute and relative backing names"

    # qemu-img commit reopens the backing image read-write.
    qimg create -q -f raw "$base/base.raw" 4M
    qimg create -q -f qcow2 -b "$base/base.raw" -F raw "$base/top.qcow2"
    qemu_io -f qcow2 -c "write -P 0x24 1M 64k" "$base/top.qcow2" >/dev/null ||
        fail "$label: write into the qcow2 overlay failed"
    qimg commit -q -f qcow2 "$base/top.qcow2" || fail "$label: qemu-img commit failed"
    qio "$base/base.raw" "read -P 0x24 1M 64k" "read -P 0 0 1M"
    ok "$label: qemu-img commit into a raw backing image (reopen read-write)"

    # Many requests in flight (queue depth 32), writes then reads.
    qimg bench -f raw -w -c 4000 -d 32 -s 4096 -S 12288 "$base/new.raw" > "$TMP/bench.out" 2>&1 ||
        { cat "$TMP/bench.out"; fail "$label: qemu-img bench -w failed"; }
    qimg bench -f raw -c 4000 -d 32 -s 4096 -S 12288 "$base/new.raw" > "$TMP/bench.out" 2>&1 ||
        { cat "$TMP/bench.out"; fail "$label: qemu-img bench failed"; }
    ok "$label: qemu-img bench, 4000 writes and reads at queue depth 32"
}

# ---- vmio:// through vmiod -------------------------------------------
make_secret "$TMP/secret"
mkdir "$TMP/export"
start_vmiod srv --export "img=$TMP/export" --secret-file "$TMP/secret"
SRV_PID=$VMIOD_PID
URI="vmio://127.0.0.1:$VMIOD_PORT/img"

# The secret, three ways: the create option, the URI option, the driver
# option of --image-opts. Everything else uses $VMIO_SECRET_FILE.
qimg create -q -f raw -o "secret-file=$TMP/secret" "$URI/auth.raw" 1M
[ "$(stat -c %s "$TMP/export/auth.raw")" = 1048576 ] || fail "create -o secret-file: wrong size"
qimg info -f raw "$URI/auth.raw?secret-file=$TMP/secret" | grep -q '1 MiB' ||
    fail "qemu-img info with ?secret-file= in the URI"
qio "driver=vmio,uri=$URI/auth.raw,secret-file=$TMP/secret" "write -P 0x66 100 200" "read -P 0x66 100 200"
ok "secret file as create option, URI option and --image-opts option"
expect 1 "secret|VMIO_SECRET_FILE" env -u VMIO_SECRET_FILE "${QENV[@]}" "$QEMU_IMG" info -f raw "$URI/auth.raw"

export VMIO_SECRET_FILE=$TMP/secret
roundtrip "vmio://" "$URI"

# What qemu-img wrote is what vmiod's directory holds.
qimg convert -f raw -O raw "$TMP/src.raw" "$URI/plain.raw"
cmp "$TMP/src.raw" "$TMP/export/plain.raw" || fail "vmio://: file on the server differs"
a=$(allocated "$TMP/export/plain.raw")
[ "$a" -le $(( 8 * 1048576 )) ] || fail "vmio://: converted image is not sparse ($a bytes allocated)"
ok "vmio://: server file identical and sparse ($a of $SIZE bytes allocated)"

# An image whose size is not a multiple of 512: QEMU reads its last sector
# whole (past the end reads as zeroes), and a write past the end grows it.
head -c 1000 /dev/urandom > "$TMP/export/odd.raw"
cp "$TMP/export/odd.raw" "$TMP/odd.orig"
qio "$URI/odd.raw" "read -P 0 1000 24" "write -P 0x7 996 28" "read -P 0x7 996 28"
[ "$(stat -c %s "$TMP/export/odd.raw")" = 1024 ] || fail "vmio://: write past the end did not grow the image"
cmp -n 996 "$TMP/odd.orig" "$TMP/export/odd.raw" || fail "vmio://: odd-sized image damaged"
ok "vmio://: odd-sized image, reads of the last sector and a write past the end"

# Errors come with libvmio's message.
expect 1 "No such file|not found|does not exist" qimg info -f raw "$URI/missing.raw"
expect 1 "export|unknown|not found|No such" qimg info -f raw \
    "vmio://127.0.0.1:$VMIOD_PORT/nosuchexport/x.raw"
make_secret "$TMP/wrong"
expect 1 "auth|denied|secret|Permission" qimg info -f raw "$URI/plain.raw?secret-file=$TMP/wrong"
expect 1 "an image is required" qemu_io -c "read 0 1" --image-opts driver=vmio
expect 1 "names no image" qimg info vmio:
expect 1 "cannot connect" qimg info -f raw "vmio://127.0.0.1:1/img/plain.raw"

# A read-only export: a writable open fails with the server's reason; with
# auto-read-only=on the node opens read-only instead (and qemu-io, which
# wants to write, is refused by the block layer); read-only opens work.
start_vmiod ro --export "img=$TMP/export,ro" --secret-file "$TMP/secret"
ROURI="vmio://127.0.0.1:$VMIOD_PORT/img"
expect 1 "vmio_open: .*read-only" qemu_io -f raw -c "read 0 4k" "$ROURI/plain.raw"
expect 1 "^qemu-io: can't open: Block node is read-only" qemu_io -c "read 0 4k" \
    --image-opts "driver=vmio,uri=$ROURI/plain.raw,auto-read-only=on"
qemu_io -r -f raw -c "read 0 4k" "$ROURI/plain.raw" >/dev/null || fail "qemu-io -r on a read-only export failed"
qimg compare -q -f raw -F raw "$TMP/src.raw" "$ROURI/plain.raw" || fail "read-only export differs"
stop_pid "$VMIOD_PID" || fail "read-only vmiod exited with status $?"
ok "vmio://: read-only export, auto-read-only=on falls back to read-only"

# Read-only opens (qemu-io -r) refuse writes.
expect 1 "read-only|Permission denied|Operation not permitted" \
    qemu_io -r -f raw -c "write -P 0x1 0 4k" "$URI/plain.raw"
cmp "$TMP/src.raw" "$TMP/export/plain.raw" || fail "read-only open modified the image"
ok "vmio://: qemu-io -r refuses writes"

# ---- local files through libvmio's file backend ------------------------
mkdir "$TMP/local"
roundtrip "vmio:/path" "vmio:$TMP/local"
mkdir "$TMP/local2"
roundtrip "vmio:file://" "vmio:file://$TMP/local2"

# ---- gfarm:// -------------------------------------------------------------
# Where a Gfarm is: the shared instance of the run (VMIO_TEST_GFARM_BASE, as
# scripts/test.sh sets it; tests/integration/gfarm-env.sh starts it if
# needed and gives this test a directory of its own), or the Gfarm of
# GFARM_CONFIG_FILE (a new directory below VMIO_TEST_GFARM_DIR, default
# /tmp, made and removed with gfmkdir and gfrm). Without either, or without
# libvmio's gfarm:// backend, this part is skipped.
GDIR=
if ! qimg --help | grep -q 'Supported formats:.* vmio-gfarm'; then
    echo "gfarm: this libvmio has no gfarm:// backend, gfarm:// part skipped"
elif [ -n "${VMIO_TEST_GFARM_BASE:-}" ]; then
    . "$(dirname "$0")/gfarm-env.sh"
    gfarm_up        # two gfsd: the instance may be shared with the gfarm-* tests
    GDIR=$GF_DIR
elif [ -n "${GFARM_CONFIG_FILE:-}" ]; then
    if ! command -v gfmkdir >/dev/null || ! command -v gfrm >/dev/null; then
        echo "gfarm: gfmkdir/gfrm (gfarm-client) not installed, gfarm:// part skipped"
    else
        GDIR=${VMIO_TEST_GFARM_DIR:-/tmp}/vmio-qemu-driver.$$
        gfmkdir -p "$GDIR" || fail "gfmkdir -p $GDIR failed"
        on_exit "gfrm -rf '$GDIR'"
    fi
else
    echo "gfarm: neither VMIO_TEST_GFARM_BASE nor GFARM_CONFIG_FILE is set, gfarm:// part skipped"
fi
if [ -n "$GDIR" ]; then
    # libvmio's gfarm:// backend reports no extents: no holes in the map.
    # The second round trip recreates the same images through vmio:.
    roundtrip "gfarm://" "gfarm://$GDIR" nosparse
    roundtrip "vmio:gfarm://" "vmio:gfarm://$GDIR" nosparse
fi

stop_pid "$SRV_PID" || fail "vmiod exited with status $? on SIGTERM"
ok "vmiod stopped cleanly"
