#!/bin/bash
# libvmio's delta codec against QEMU's XBZRLE, the production anchor of
# issue 5 ("output on changed pages no larger than QEMU's XBZRLE and its
# encoder faster"). QEMU's encoder is compiled here, at run time, from
# migration/xbzrle.c of Debian's QEMU 7.2 source package (fetched by
# scripts/qemu-build.sh --source-only; nothing of QEMU is in this tree),
# with a few stand-in headers, and linked with bench/xbzrle-anchor.c and
# libvmio/migrate/codec.c, all with the same compiler and flags.
#
#   bench/delta-vs-xbzrle.sh                 # synthetic pages
#   bench/delta-vs-xbzrle.sh WORKLOAD...     # corpus snapshots
#   bench/delta-vs-xbzrle.sh FILE FILE...    # any consecutive images
#
# Environment:
#   VMIO_QEMU_DIR    where the QEMU source is cached (default build-qemu)
#   VMIO_CORPUS_DIR  corpus root (default /var/tmp/vmio-corpus); a
#                    WORKLOAD argument means its snap-*.raw in order
#   PAGES            synthetic pages (default 32768), PAGE_SIZE (4096)
#   CFLAGS           compiler flags of both encoders (default -O2, QEMU's)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2}
PAGES=${PAGES:-32768}
PAGE_SIZE=${PAGE_SIZE:-4096}
CORPUS=${VMIO_CORPUS_DIR:-/var/tmp/vmio-corpus}
export VMIO_QEMU_DIR=${VMIO_QEMU_DIR:-$BENCH_ROOT/build-qemu}
require_cmd "$CC" apt-get

say "fetching QEMU's source (cached in $VMIO_QEMU_DIR/src)"
QSRC=$(SKIP_DEPS=1 "$BENCH_ROOT/scripts/qemu-build.sh" --source-only | tail -n1)
[ -f "$QSRC/migration/xbzrle.c" ] || die "no migration/xbzrle.c in $QSRC"
grep -q 'int xbzrle_encode_buffer(uint8_t \*old_buf, uint8_t \*new_buf, int slen,' \
    "$QSRC/migration/xbzrle.h" || die "unexpected xbzrle.h in $QSRC"

# Stand-ins for the three QEMU headers xbzrle.c includes: the C library,
# and the two uleb128 helpers of util/cutils.c, written here.
SHIM=$TMP/shim
mkdir -p "$SHIM/qemu"
cat > "$SHIM/qemu/osdep.h" <<'EOF'
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#define g_assert(x) assert(x)
EOF
cat > "$SHIM/qemu/cutils.h" <<'EOF'
static inline int uleb128_encode_small(uint8_t *out, uint32_t n)
{
    int i = 0;
    while (n >= 0x80) {
        out[i++] = (uint8_t)(n | 0x80);
        n >>= 7;
    }
    out[i++] = (uint8_t)n;
    return i;
}
static inline int uleb128_decode_small(const uint8_t *in, uint32_t *n)
{
    /* at most two bytes, as QEMU's */
    if (!(in[0] & 0x80)) {
        *n = in[0];
        return 1;
    }
    if (in[1] & 0x80)
        return -1;
    *n = (uint32_t)(in[0] & 0x7f) | (uint32_t)in[1] << 7;
    return 2;
}
EOF

BIN=$TMP/xbzrle-anchor
say "compiling with $CC $CFLAGS: $QSRC/migration/xbzrle.c, bench/xbzrle-anchor.c, libvmio/migrate/codec.c"
# shellcheck disable=SC2086
$CC $CFLAGS -std=gnu11 -DNDEBUG -I"$SHIM" -I"$QSRC/migration" -c "$QSRC/migration/xbzrle.c" \
    -o "$TMP/xbzrle.o"
# shellcheck disable=SC2086
$CC $CFLAGS -std=c11 -D_GNU_SOURCE -I"$BENCH_ROOT/include" -I"$BENCH_ROOT/libvmio" \
    "$BENCH_ROOT/bench/xbzrle-anchor.c" "$BENCH_ROOT/libvmio/migrate/codec.c" \
    "$TMP/xbzrle.o" -lnettle -o "$BIN"
check_load

run() { # LABEL ARGS...
    local label=$1
    shift
    printf '== %s\n' "$label"
    "$BIN" --page-size "$PAGE_SIZE" "$@" | tee "$TMP/out"
    sed -n 's/^RESULT //p' "$TMP/out" | sed "s/^/$label /" >> "$TMP/results"
}

: > "$TMP/results"
if [ $# -eq 0 ]; then
    run synthetic --pages "$PAGES"
else
    files=()
    for a in "$@"; do
        if [ -d "$CORPUS/$a" ]; then
            mapfile -t snaps < <(find "$CORPUS/$a" -maxdepth 1 -name 'snap-*.raw' | sort -V)
            [ "${#snaps[@]}" -ge 2 ] || die "$CORPUS/$a has fewer than 2 snap-*.raw"
            run "$a" "${snaps[@]}"
        elif [ -f "$a" ]; then
            files+=("$a")
        else
            die "$a: neither a workload under $CORPUS nor a file"
        fi
    done
    [ "${#files[@]}" -eq 0 ] || run files "${files[@]}"
fi

out=$(out_file delta-vs-xbzrle)
python3 - "$TMP/results" "$out" "$CFLAGS" "$QSRC" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    label, *kv = line.split()
    r = {'input': label}
    for item in kv:
        k, v = item.split('=')
        r[k] = float(v) if '.' in v else int(v)
    r['size_ratio'] = r['vmio_bytes'] / r['xbzrle_bytes']
    r['speed_ratio'] = r['vmio_gbs'] / r['xbzrle_gbs']
    rows.append(r)
json.dump({'cflags': sys.argv[3], 'qemu_source': sys.argv[4], 'rows': rows},
          open(sys.argv[2], 'w'), indent=1)
print('%-12s %9s %12s %12s %8s %8s %8s %7s' % ('input', 'pages', 'xbzrle B', 'libvmio B',
      'size', 'xbzrle', 'libvmio', 'speed'))
for r in rows:
    print('%-12s %9d %12d %12d %8.3f %6.2f GB/s %6.2f GB/s %6.2fx' % (
        r['input'], r['pages'], r['xbzrle_bytes'], r['vmio_bytes'], r['size_ratio'],
        r['xbzrle_gbs'], r['vmio_gbs'], r['speed_ratio']))
PY
say "raw results: $out"
