#!/bin/sh
# The main job, from a fresh Debian 12 machine to a verified result:
#   1. install what is needed (scripts/install-deps.sh; needs root)
#   2. configure and build build/
#   3. start vmiod on loopback serving a temporary directory (with a
#      temporary 0600 shared secret)
#   4. make a test image (IMAGE_MIB MiB, default 256, random data with holes),
#      copy it in with vmio-cp --verify
#   5. read it back through the nbdkit plugin with qemu-img convert, and
#      compare with qemu-img compare against the original
#   6. print a short summary and clean up
# Environment: BUILD_DIR (default build), IMAGE_MIB (default 256),
# SKIP_DEPS=1 to skip the package step, KEEP=1 to keep the temp dir.
set -eu

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
IMAGE_MIB=${IMAGE_MIB:-256}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

say() { printf '==> %s\n' "$*"; }
die() { printf 'run-main: %s\n' "$*" >&2; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

case $IMAGE_MIB in ''|*[!0-9]*) die "IMAGE_MIB must be a number of MiB" ;; esac
[ "$IMAGE_MIB" -ge 16 ] || die "IMAGE_MIB must be at least 16"

if [ "${SKIP_DEPS:-0}" != 1 ]; then
    say "installing dependencies"
    sh scripts/install-deps.sh
fi

say "building $BUILD_DIR"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" -Dnbdkit=enabled >/dev/null || die "meson setup failed"
fi
ninja -C "$BUILD_DIR" -j "$JOBS" >/dev/null || ninja -C "$BUILD_DIR" -j 1 ||
    die "build failed"

VMIOD=$BUILD_DIR/cli/vmiod
VMIO_CP=$BUILD_DIR/cli/vmio-cp
PLUGIN=$BUILD_DIR/examples/nbdkit/nbdkit-vmio-plugin.so
for f in "$VMIOD" "$VMIO_CP" "$PLUGIN"; do
    [ -e "$f" ] || die "$f was not built"
done
for c in nbdkit qemu-img python3; do
    command -v "$c" >/dev/null || die "$c is not installed"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmio-main.XXXXXX")
VMIOD_PID=
NBDKIT_PID=
cleanup() {
    for p in $NBDKIT_PID $VMIOD_PID; do
        kill "$p" 2>/dev/null || true
    done
    for p in $NBDKIT_PID $VMIOD_PID; do
        wait "$p" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "run-main: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS TEST-ARGS...: poll test(1) every 0.1 s.
wait_for() {
    n=$(( $1 * 10 ))
    shift
    while ! test "$@"; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}

say "starting vmiod on loopback"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/secret")
mkdir "$TMP/export"
"$VMIOD" --listen 127.0.0.1:0 --port-file "$TMP/port" --foreground \
    --export "images=$TMP/export" --secret-file "$TMP/secret" >"$TMP/vmiod.log" 2>&1 &
VMIOD_PID=$!
wait_for 20 -s "$TMP/port" || { cat "$TMP/vmiod.log" >&2; die "vmiod did not start"; }
PORT=$(cat "$TMP/port")
URI="vmio://127.0.0.1:$PORT/images/disk.raw"
export VMIO_SECRET_FILE="$TMP/secret"

say "making a ${IMAGE_MIB} MiB test image"
# A quarter of the image is random data in 4 MiB runs, the rest is holes.
truncate -s "${IMAGE_MIB}M" "$TMP/src.raw"
i=0
while [ "$i" -lt "$IMAGE_MIB" ]; do
    head -c 4M /dev/urandom | dd of="$TMP/src.raw" bs=1M seek="$i" conv=notrunc status=none
    i=$((i + 16))
done

say "copying it in: vmio-cp --verify $TMP/src.raw $URI"
"$VMIO_CP" --verify --json --no-progress "$TMP/src.raw" "$URI" > "$TMP/cp.json" ||
    { cat "$TMP/vmiod.log" >&2; die "vmio-cp failed"; }

say "reading it back through nbdkit-vmio-plugin with qemu-img"
nbdkit -f -r -U "$TMP/nbd.sock" "$PLUGIN" "uri=$URI" "secret-file=$TMP/secret" \
    >"$TMP/nbdkit.log" 2>&1 &
NBDKIT_PID=$!
wait_for 20 -S "$TMP/nbd.sock" || { cat "$TMP/nbdkit.log" >&2; die "nbdkit did not start"; }
NBD="nbd+unix:///?socket=$TMP/nbd.sock"
t0=$(now_ms)
qemu-img convert -f raw -O raw "$NBD" "$TMP/out.raw" || die "qemu-img convert failed"
t_convert=$(( $(now_ms) - t0 ))
qemu-img compare -f raw -F raw "$TMP/src.raw" "$TMP/out.raw" >/dev/null ||
    die "qemu-img compare: the image read back differs from the original"
qemu-img compare -f raw -F raw "$TMP/src.raw" "$NBD" >/dev/null ||
    die "qemu-img compare: the image served over NBD differs from the original"

python3 - "$TMP/cp.json" "$t_convert" "$(du -B1 "$TMP/src.raw" | cut -f1)" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    j = json.load(f)
ms = int(sys.argv[2])
data = int(sys.argv[3])
mib = 1 << 20
print()
print("libvmio main job: OK")
print("  image            %d MiB (%d MiB of data, the rest holes)" % (j["bytes_total"] // mib, data // mib))
print("  vmio-cp in       %.2f s, %d MiB written, %d MiB of holes skipped, sha256 %s"
      % (j["seconds"], j["bytes_copied"] // mib, j["bytes_skipped"] // mib, j["verify"]))
print("  qemu-img out     %.2f s through nbdkit-vmio-plugin (%.0f MB/s of image)"
      % (ms / 1000, j["bytes_total"] / 1e6 / max(ms / 1000, 1e-3)))
print("  qemu-img compare identical (file and NBD export)")
print("  sha256           %s" % j["source_sha256"])
PY
