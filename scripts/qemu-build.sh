#!/bin/bash
# Builds Debian's own QEMU 7.2 tools (qemu-img, qemu-io) with the libvmio
# block driver of examples/qemu/ compiled in, for tests/integration/qemu-driver.sh.
#
#   scripts/qemu-build.sh            # fetch, configure, build (cached)
#   scripts/qemu-build.sh --source-only   # only step 3; prints the source dir
#   VMIO_QEMU_DIR=/var/tmp/q scripts/qemu-build.sh
#
# Steps, each skipped when its result is already there:
#   1. packages: dpkg-dev (apt-get source) and what QEMU's configure needs
#      for the tools (installed with apt-get when missing; needs root then)
#   2. libvmio: meson setup + ninja in $VMIO_QEMU_DIR/libvmio (the QEMU
#      build links it in place, with an rpath)
#   3. source: `apt-get source qemu` through a private apt configuration
#      made from the machine's Debian sources (deb-src added); the system's
#      sources, lists and caches are left untouched
#   4. integration: block/vmio.c from examples/qemu/block-vmio.c (checked
#      with QEMU's checkpatch.pl) and the patch examples/qemu/block-meson.patch
#      (block/meson.build)
#   5. configure (tools only, every optional feature off) and
#      `ninja qemu-img qemu-io`
#
# Environment:
#   VMIO_QEMU_DIR     cache and build directory (default: build-qemu in the
#                     source tree); the binaries end up in
#                     $VMIO_QEMU_DIR/qemu-build/qemu-img and qemu-io
#   LIBVMIO_BUILD     libvmio build directory to use (default:
#                     $VMIO_QEMU_DIR/libvmio, configured here if missing)
#   QEMU_VERSION      Debian version to fetch (default: the newest 7.2 in the
#                     machine's Debian sources); remove $VMIO_QEMU_DIR/src to
#                     fetch again
#   JOBS              parallel jobs (default: number of CPUs)
#   SKIP_DEPS=1       do not install packages
set -euo pipefail

SRC_ROOT=$(cd "$(dirname "$0")/.." && pwd)
QDIR=${VMIO_QEMU_DIR:-$SRC_ROOT/build-qemu}
mkdir -p "$QDIR"
QDIR=$(cd "$QDIR" && pwd)
LIBVMIO_BUILD=${LIBVMIO_BUILD:-$QDIR/libvmio}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
APTDIR=$QDIR/apt
SRCDIR=$QDIR/src
QBUILD=$QDIR/qemu-build

T_START=$(date +%s)
TIMINGS=
say() { printf 'qemu-build: %s\n' "$*"; }
die() { printf 'qemu-build: error: %s\n' "$*" >&2; exit 1; }
# timed NAME CMD...: run CMD (a failure ends the script), remember how long
# it took.
timed() {
    local name=$1 t0
    shift
    t0=$(date +%s)
    "$@"
    TIMINGS="$TIMINGS$(printf '  %-12s %5ss' "$name" $(( $(date +%s) - t0 )))
"
}

# ---- 1. packages ---------------------------------------------------------
# configure --enable-tools of QEMU 7.2 needs a C compiler, meson (>= 0.61.3,
# Debian's source has no bundled copy), ninja, pkg-config, python3, glib and
# zlib; dpkg-dev unpacks the source package.
PKGS="dpkg-dev build-essential meson ninja-build pkg-config python3
      libglib2.0-dev zlib1g-dev nettle-dev"

install_deps() {
    local missing='' p
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
            missing="$missing $p"
    done
    [ -n "$missing" ] || return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages:$missing (run as root, or install them)"
    say "installing:$missing"
    # shellcheck disable=SC2086
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $missing; } >"$QDIR/deps.log" 2>&1 ||
        { tail -n 30 "$QDIR/deps.log" >&2; die "apt-get install failed (log: $QDIR/deps.log)"; }
}

# ---- 2. libvmio ----------------------------------------------------------
build_libvmio() {
    if [ ! -f "$LIBVMIO_BUILD/build.ninja" ]; then
        meson setup "$LIBVMIO_BUILD" "$SRC_ROOT" -Dtests=disabled -Dman=disabled \
            -Dnbdkit=disabled >"$QDIR/libvmio-setup.log" 2>&1 ||
            { tail -n 30 "$QDIR/libvmio-setup.log" >&2; die "meson setup of libvmio failed"; }
    fi
    ninja -C "$LIBVMIO_BUILD" -j "$JOBS" >"$QDIR/libvmio-build.log" 2>&1 ||
        { tail -n 30 "$QDIR/libvmio-build.log" >&2; die "libvmio build failed"; }
    [ -f "$LIBVMIO_BUILD/libvmio/libvmio.so" ] ||
        die "$LIBVMIO_BUILD/libvmio/libvmio.so was not built"
    # A pkg-config file for the uninstalled library, found by QEMU's meson.
    mkdir -p "$QDIR/pkgconfig"
    cat > "$QDIR/pkgconfig/vmio.pc" <<EOF
Name: libvmio
Description: libvmio (uninstalled build in $LIBVMIO_BUILD)
Version: $(sed -n "s/^  version : '\(.*\)',$/\1/p" "$SRC_ROOT/meson.build" | head -n1)
Libs: -L$LIBVMIO_BUILD/libvmio -Wl,-rpath,$LIBVMIO_BUILD/libvmio -lvmio
Cflags: -I$SRC_ROOT/include
EOF
}

# ---- 3. source -----------------------------------------------------------
# Writes deb-src stanzas for every enabled Debian "deb" source of the
# machine (deb822 .sources files and one-line .list files).
debian_uri() {
    case $1 in
    *debian.org/*|*/debian|*/debian/|*/debian-security|*/debian-security/) return 0 ;;
    *) return 1 ;;
    esac
}

deb822_to_src() {
    # One stanza per paragraph; Types must contain "deb"; Enabled: no skips.
    awk '
    function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "")
            printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n%s\n", uris, suites, comps, (signed != "" ? "Signed-By: " signed "\n" : "")
        types = uris = suites = comps = signed = ""; enabled = "yes"
    }
    BEGIN { enabled = "yes" }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]/ {
        # A continuation line (an inline Signed-By key block).
        if (key == "signed-by") signed = signed "\n" $0
        next
    }
    {
        key = tolower($1); sub(/:$/, "", key)
        val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "components") comps = val
        else if (key == "signed-by") signed = val
        else if (key == "enabled") enabled = tolower(val)
    }
    END { flush() }' "$1"
}

list_to_src() {
    # deb [options] URI SUITE COMPONENT...
    sed -n 's/^[ \t]*deb[ \t]\+/deb-src /p' "$1"
}

write_sources() {
    local f out=$APTDIR/sources.list.d n=0 u line
    rm -rf "$out"
    mkdir -p "$out"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        while IFS= read -r line; do
            # The URI is the first word not in [options].
            u=$(printf '%s\n' "$line" | sed 's/\[[^]]*\]//' | awk '{print $2}')
            debian_uri "$u" || continue
            printf '%s\n' "$line" >> "$out/debian-src.list"
            n=$((n + 1))
        done < <(list_to_src "$f")
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # Keep the stanzas whose every URI is a Debian one.
        deb822_to_src "$f" | awk -v RS= -v ORS='\n\n' '
            { ok = 1
              if (match($0, /URIs: [^\n]*/)) {
                  n = split(substr($0, RSTART + 6, RLENGTH - 6), us, " ")
                  for (i = 1; i <= n; i++)
                      if (us[i] !~ /debian\.org\// && us[i] !~ /\/debian(-security)?\/?$/) ok = 0
              } else ok = 0
              if (ok) print }' >> "$out/debian-src.sources"
    done
    if [ -f "$out/debian-src.sources" ]; then
        n=$((n + $(grep -c '^Types: deb-src' "$out/debian-src.sources" || true)))
    fi
    [ "$n" -gt 0 ] || die "no Debian 'deb' source found in /etc/apt/sources.list{,.d}"
    say "private apt sources ($n deb-src entries) in $out"
}

APT_OPTS=()
fetch_source() {
    local d
    d=$(find "$SRCDIR" -maxdepth 1 -type d -name 'qemu-7.2*' 2>/dev/null | head -n1 || true)
    if [ -n "$d" ] && [ -f "$d/.vmio-unpacked" ]; then
        QSRC=$d
        say "source: $QSRC (cached)"
        return 0
    fi
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
    write_sources
    APT_OPTS=(
        -o "Dir::Etc::SourceList=/dev/null"
        -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
        -o "Dir::State::Lists=$APTDIR/lists"
        -o "Dir::Cache=$APTDIR/cache"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
    )
    # Unprivileged download user cannot write into a root-only cache dir.
    [ "$(id -u)" -ne 0 ] || APT_OPTS+=(-o "APT::Sandbox::User=root")
    say "apt-get update (private lists)"
    apt-get "${APT_OPTS[@]}" update -qq >"$QDIR/fetch.log" 2>&1 ||
        { tail -n 30 "$QDIR/fetch.log" >&2; die "apt-get update with the private sources failed"; }
    # The newest 7.2 (backports may offer newer QEMUs).
    local ver=${QEMU_VERSION:-}
    if [ -z "$ver" ]; then
        ver=$(apt-cache "${APT_OPTS[@]}" showsrc qemu 2>/dev/null |
              sed -n 's/^Version: \(\(1:\)\{0,1\}7\.2[^ ]*\)$/\1/p' | sort -V | tail -n1 || true)
        [ -n "$ver" ] || die "no QEMU 7.2 source package in the configured Debian sources"
    fi
    rm -rf "$SRCDIR"
    mkdir -p "$SRCDIR"
    say "apt-get source qemu=$ver"
    (cd "$SRCDIR" && apt-get "${APT_OPTS[@]}" source -qq "qemu=$ver") \
        >>"$QDIR/fetch.log" 2>&1 || { tail -n 30 "$QDIR/fetch.log" >&2; die "apt-get source qemu failed"; }
    d=$(find "$SRCDIR" -maxdepth 1 -type d -name 'qemu-*' | head -n1)
    [ -n "$d" ] || die "apt-get source left no qemu-* directory in $SRCDIR"
    case $(basename "$d") in
    qemu-7.2*) ;;
    *) die "fetched $(basename "$d"), expected QEMU 7.2 (set QEMU_VERSION)" ;;
    esac
    touch "$d/.vmio-unpacked"
    QSRC=$d
    say "source: $QSRC ($(cd "$SRCDIR" && echo *.dsc))"
}

# ---- 4. integration -----------------------------------------------------
integrate() {
    local drv=$SRC_ROOT/examples/qemu/block-vmio.c
    local patch=$SRC_ROOT/examples/qemu/block-meson.patch
    cmp -s "$drv" "$QSRC/block/vmio.c" || cp "$drv" "$QSRC/block/vmio.c"
    if ! grep -q "files('vmio.c')" "$QSRC/block/meson.build"; then
        patch -d "$QSRC" -p1 --forward --quiet < "$patch" ||
            die "examples/qemu/block-meson.patch does not apply to $QSRC/block/meson.build"
        say "patched block/meson.build"
    fi
    # QEMU's own style checker: the driver is meant to live in QEMU's tree.
    if ! perl "$QSRC/scripts/checkpatch.pl" --no-tree -q -f "$QSRC/block/vmio.c" \
        >"$QDIR/checkpatch.log" 2>&1 || grep -q '^WARNING' "$QDIR/checkpatch.log"; then
        cat "$QDIR/checkpatch.log" >&2
        die "examples/qemu/block-vmio.c does not pass QEMU's scripts/checkpatch.pl"
    fi
}

# ---- 5. configure and build --------------------------------------------
# Tools only; every feature that is "auto" by default is off
# (--without-default-features), so the build needs nothing beyond glib and
# zlib. The block driver whitelist is empty: every driver is usable.
CONFIGURE_ARGS=(
    --target-list=
    --disable-system --disable-user --disable-linux-user --disable-bsd-user
    --enable-tools --without-default-features
    --disable-docs --disable-debug-info --disable-werror
    --meson=meson
)

configure_qemu() {
    local want have
    want="${CONFIGURE_ARGS[*]} $(cat "$QDIR/pkgconfig/vmio.pc")"
    have=$(cat "$QBUILD/.vmio-configure" 2>/dev/null || true)
    if [ -f "$QBUILD/build.ninja" ] && [ "$want" = "$have" ]; then
        say "configure: $QBUILD (cached)"
        return 0
    fi
    rm -rf "$QBUILD"
    mkdir -p "$QBUILD"
    say "configure: ${CONFIGURE_ARGS[*]}"
    (cd "$QBUILD" && PKG_CONFIG_PATH="$QDIR/pkgconfig" "$QSRC/configure" "${CONFIGURE_ARGS[@]}") \
        >"$QDIR/configure.log" 2>&1 ||
        { tail -n 40 "$QDIR/configure.log" >&2; die "QEMU configure failed (log: $QDIR/configure.log)"; }
    printf '%s' "$want" > "$QBUILD/.vmio-configure"
}

build_qemu() {
    say "ninja -j $JOBS qemu-img qemu-io"
    PKG_CONFIG_PATH="$QDIR/pkgconfig" ninja -C "$QBUILD" -j "$JOBS" qemu-img qemu-io \
        >"$QDIR/build.log" 2>&1 ||
        { grep -E 'error|Error' "$QDIR/build.log" | tail -n 40 >&2;
          die "QEMU build failed (log: $QDIR/build.log)"; }
    # The driver must build without a warning.
    if grep -A3 'block/vmio\.c.*warning' "$QDIR/build.log" >&2; then
        die "block/vmio.c compiled with warnings"
    fi
    "$QBUILD/qemu-img" --help | grep -q 'Supported formats:.* vmio' ||
        die "the built qemu-img has no vmio driver"
}

main() {
    say "directory: $QDIR"
    # --source-only: fetch and unpack the source into $VMIO_QEMU_DIR/src and
    # print its path (bench/delta-vs-xbzrle.sh compiles one file of it).
    if [ "${1:-}" = --source-only ]; then
        fetch_source >&2
        printf '%s\n' "$QSRC"
        return 0
    fi
    [ "${SKIP_DEPS:-0}" = 1 ] || timed deps install_deps
    timed libvmio build_libvmio
    timed fetch fetch_source
    timed integrate integrate
    timed configure configure_qemu
    timed build build_qemu
    say "built $QBUILD/qemu-img and $QBUILD/qemu-io ($("$QBUILD/qemu-img" --version | head -n1))"
    printf 'qemu-build: timings:\n%s  %-12s %5ss\n' "$TIMINGS" total $(( $(date +%s) - T_START ))
}

main "$@"
