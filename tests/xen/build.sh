#!/bin/bash
# tests/xen/build.sh: prepare a Xen host for tests/xen/run.sh.
#
#   tests/xen/build.sh [--build-dir DIR] [--out DIR] [--no-rebuild]
#
# Produces, in the out dir (default <build-dir>/xen):
#   xen.elf     Debian's Xen hypervisor (xen-hypervisor-4.x-amd64), unpacked:
#               QEMU's multiboot loader takes the ELF, not the .gz (cached)
#   kernel/     Debian's kernel as an uncompressed vmlinux (dom0 and domU
#               boot the same one) and the Xen modules of dom0 (cached)
#   base/       dom0 userspace: Debian's Xen toolstack (xl, xenstored,
#               xenconsoled) and busybox (cached)
#   domu.img    the domU's initramfs: static busybox and tests/xen/domu-init,
#               which keeps writing memory (cached)
#   initrd.img  dom0's initramfs: base/ + modules + the project installed
#               with `meson install --destdir` + the test programs of
#               tests/xen + tests/xen/guest/ + the domU: repacked every run
# Downloads go to <out>/debs. Needs apt-get (Debian 12), dpkg-deb, xz,
# lz4 (or gzip), ldd, ldconfig, meson. Installs qemu-system-x86 with
# apt-get when it is missing and we are root.
# Exit status: 0 ok, 77 when QEMU, Xen or the kernel cannot be obtained,
# 1 otherwise.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)

# dom0 packages besides Xen's own (their Depends closure is added).
DOM0_PKGS="busybox-static kmod libvirt-daemon libvirt-daemon-driver-xen libvirt-clients"
# Never used in a busybox dom0 without dpkg, systemd, perl, python or PAM.
EXCLUDE='^(perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|cdebconf|debconf|libelogind0|usrmerge|usr-is-merged|adduser|passwd|libpam.*|install-info|dpkg|tar|libsemanage.*|libdebian-installer4|libnewt.*|libslang2|libtextwrap1|udev|init-system-helpers|lsb-base|sysvinit-utils|readline-common|libdb5.3|libgdbm.*|libcap2-bin|python3.*|libpython3.*|ucf|coreutils|debianutils|sensible-utils|media-types|mime-support|mailcap|tzdata|netbase|libmpdec3|libsystemd0|systemd.*)$'
# dom0 kernel modules: the toolstack's devices.
MODULES="xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd"
# Executables of tests/xen in the build dir, into /xen/bin.
TEST_PROGS="xen-dirty-test xen-digest simd-check tlb-check xen-group-test xen-group-rollback"

build=$(cd "$here/../.." && pwd)/build
out=
rebuild=1
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-rebuild) rebuild=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
die() { echo "build.sh: error: $*" >&2; exit 1; }
skip() { echo "build.sh: SKIP: $*"; exit 77; }
[ -f "$build/build.ninja" ] || die "$build is not a meson build dir (meson setup $build)"
build=$(cd "$build" && pwd)
out=${out:-$build/xen}
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.lock"
command -v flock >/dev/null && flock 9

us() { local t=${1/./}; echo $((10#$t)); }
t_start=$EPOCHREALTIME
t_last=$t_start
tick() {
    local now=$EPOCHREALTIME d
    d=$(($(us "$now") - $(us "$t_last")))
    printf 'build.sh: %-44s %3d.%01ds\n' "$1" $((d / 1000000)) $((d % 1000000 / 100000))
    t_last=$now
}
is_root() { [ "$(id -u)" -eq 0 ]; }
apt_updated=0
apt_update() {
    [ $apt_updated = 0 ] && is_root || return 1
    apt_updated=1
    echo "build.sh: apt-get update"
    apt-get update -qq >"$out/apt-update.log" 2>&1
}
# A section's text, for the cache stamps: "# --- N." to "# --- N+1.".
section() { sed -n "/^# --- $1\\./,/^# --- $(($1 + 1))\\./p" "$0"; }

# --- 1. QEMU -------------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
    is_root && command -v apt-get >/dev/null ||
        skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    echo "build.sh: installing qemu-system-x86"
    inst() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 >"$out/apt-qemu.log" 2>&1; }
    inst || { apt_update && inst; } || skip "qemu-system-x86 could not be installed"
    tick "install qemu-system-x86"
fi
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    skip "apt-get and dpkg-deb are needed to fetch Debian's Xen and kernel"

# --- 2. packages: Xen, the kernel, dom0 userspace (cached) ----------------------
debs=$out/debs
mkdir -p "$debs"
pick() { # the names the archive knows now
    hv=$(apt-cache search --names-only '^xen-hypervisor-4\.[0-9]+-amd64$' 2>/dev/null |
        awk '{print $1}' | sort -V | tail -1)
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$hv" ] && [ -n "$kpkg" ]
}
pick || { apt_update && pick; } || true
pkglist=$out/dom0-pkgs.txt
if [ -n "$hv" ] && [ -n "$kpkg" ]; then
    xver=${hv#xen-hypervisor-}
    xver=${xver%-amd64}
    want="$hv xen-utils-$xver xen-utils-common xenstore-utils $DOM0_PKGS"
    key="$want | $EXCLUDE"
    if [ ! -s "$pkglist" ] || [ "$(head -1 "$pkglist")" != "$key" ]; then
        sel=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances $want 2>/dev/null |
            grep -v '^[ <]' | sort -u | grep -Ev "$EXCLUDE" || true)
        [ -n "$sel" ] || die "apt-cache found none of: $want"
        { echo "$key"; echo "$kpkg"; echo "$sel"; } >"$pkglist"
    fi
elif [ ! -s "$pkglist" ]; then
    skip "Debian's Xen hypervisor or kernel packages are unknown to apt (apt-get update?)"
fi
# Line 2 is the kernel, the rest dom0's packages.
kpkg=$(sed -n 2p "$pkglist")
kver=${kpkg#linux-image-}
need=()
for p in $(tail -n +2 "$pkglist"); do
    compgen -G "$debs/${p}_*.deb" >/dev/null || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "build.sh: downloading ${#need[@]} packages"
    get() { (cd "$debs" && apt-get download "${need[@]}") >"$out/download.log" 2>&1; }
    get || { apt_update && get; } ||
        skip "cannot download Xen, the kernel or dom0's packages (see $out/download.log)"
    tick "download packages"
fi
deb() { ls "$debs/$1"_*.deb 2>/dev/null | head -1; }

# --- 3. dom0 userspace and the hypervisor (cached) ------------------------------
base=$out/base
stamp=$( (cat "$pkglist"; ls "$debs"; section 3) | sha256sum | cut -c1-16)
if [ "$(cat "$base/.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -s "$out/xen.elf" ]; then
    rm -rf "$base"
    mkdir -p "$base"
    for p in $(tail -n +3 "$pkglist"); do dpkg-deb -x "$(deb "$p")" "$base"; done
    xgz=$(ls "$base"/boot/xen-4.*-amd64.gz 2>/dev/null | head -1)
    [ -n "$xgz" ] || die "no xen-4.*-amd64.gz in the hypervisor package"
    zcat "$xgz" >"$out/xen.elf"
    rm -rf "$base"/boot "$base"/usr/share/{doc,man,locale,info,lintian,bash-completion,bug}
    # libvirtd for guest/35-libvirt-xen.sh: its libxl driver only (the
    # others need what this dom0 does not have: QEMU, udev, dnsmasq)
    find "$base"/usr/lib/x86_64-linux-gnu/libvirt/connection-driver -name '*.so' \
        ! -name libvirt_driver_libxl.so -delete
    # libvirt's libxl driver names the host CPU from Xen's feature words
    # and refuses to start when no model of its CPU map fits; QEMU TCG's
    # CPU under Xen fits none (not even the 486: no vme), so dom0 gets one
    # more model that asks for the FPU only
    cm=$base/usr/share/libvirt/cpu_map
    if [ -f "$cm/index.xml" ]; then
        printf '%s\n' '<cpus>' "  <model name='tcg-minimal'>" \
            "    <decode host='on' guest='off'/>" "    <feature name='fpu'/>" \
            '  </model>' '</cpus>' >"$cm/x86_tcg-minimal.xml"
        sed -i "s|<include filename='x86_486.xml'/>|&<include filename='x86_tcg-minimal.xml'/>|" \
            "$cm/index.xml"
    fi
    mkdir -p "$base"/{proc,sys,dev,run,tmp,mnt,root} "$base"/var/lib/{xen,xenstored} \
        "$base"/var/log/xen/console
    ln -sfn /run "$base/var/run"
    ln -sfn /run/lock "$base/var/lock"
    [ -e "$base/bin/sh" ] || ln -s busybox "$base/bin/sh"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$base/etc/passwd"
    echo 'root:x:0:' >"$base/etc/group"
    printf '127.0.0.1 localhost\n' >"$base/etc/hosts"
    printf '%s\n' /usr/local/lib/x86_64-linux-gnu /usr/local/lib \
        /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu >"$base/etc/ld.so.conf"
    rm -rf "$base/etc/ld.so.conf.d"
    echo "$stamp" >"$base/.stamp"
    tick "unpack dom0 userspace and Xen ($(du -sm "$base" | cut -f1) MB)"
fi
kmod() { # dom0's own kmod, run here through its own ld.so
    local l=$base/lib/x86_64-linux-gnu
    "$l/ld-linux-x86-64.so.2" --library-path "$l:$base/usr/lib/x86_64-linux-gnu" \
        --argv0 "$1" "$base/bin/kmod" "${@:2}"
}

# --- 4. the kernel: vmlinux and dom0's modules (cached) --------------------------
kdir=$out/kernel
kstamp=$( (basename "$(deb "$kpkg")"; echo $MODULES; section 4) | sha256sum | cut -c1-16)
if [ "$(cat "$kdir/.stamp" 2>/dev/null)" != "$kstamp" ]; then
    rm -rf "$kdir" "$out/kernel.tmp"
    kt=$out/kernel.tmp
    mkdir -p "$kdir" "$kt"
    dpkg-deb -x "$(deb "$kpkg")" "$kt"
    # The ELF inside vmlinuz (xz): booting it saves the decompression under
    # TCG, for dom0 and for every domU.
    off=$(grep -obUaP '\xfd7zXZ\x00' "$kt/boot/vmlinuz-$kver" | head -1 | cut -d: -f1)
    [ -n "$off" ] || die "no xz payload in vmlinuz-$kver"
    tail -c +$((off + 1)) "$kt/boot/vmlinuz-$kver" | xz -dc --single-stream \
        >"$kdir/vmlinux" 2>/dev/null || true
    [ -s "$kdir/vmlinux" ] || die "could not extract vmlinux from vmlinuz-$kver"
    kmod depmod -b "$kt" "$kver"
    mods=$(for m in $MODULES; do
        kmod modprobe -d "$kt" -S "$kver" --show-depends "$m" ||
            echo "build.sh: warning: no module $m" >&2
    done | awk '$1 == "insmod" {print $2}' | sort -u)
    for f in $mods; do
        rel=${f#"$kt"/}
        mkdir -p "$kdir/$(dirname "$rel")"
        cp "$f" "$kdir/$rel"
    done
    cp "$kt/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$kdir/lib/modules/$kver/"
    rm -rf "$kt"
    echo "$kstamp" >"$kdir/.stamp"
    tick "kernel $kver: vmlinux + $(echo "$mods" | wc -l) modules"
fi

# --- 5. the domU's initramfs (cached) ----------------------------------------------
if command -v lz4 >/dev/null; then z() { lz4 -l -q -1; }; else z() { gzip -1; }; fi
dstamp=$( (cat "$here/domu-init"; sha256sum "$base/bin/busybox"; section 5) | sha256sum | cut -c1-16)
if [ "$(cat "$out/domu.stamp" 2>/dev/null)" != "$dstamp" ] || [ ! -s "$out/domu.img" ]; then
    dt=$out/domu.tmp
    rm -rf "$dt"
    mkdir -p "$dt"/{bin,proc,sys,dev,tmp}
    cp "$base/bin/busybox" "$dt/bin/"
    cp "$here/domu-init" "$dt/init"
    chmod 755 "$dt/init"
    (cd "$dt" && find . | "$base/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$out/domu.img"
    rm -rf "$dt"
    echo "$dstamp" >"$out/domu.stamp"
    tick "domU initramfs"
fi

# --- 6. dom0's initramfs: the project and the tests (every run) -------------------
stage=$out/stage
rm -rf "$stage"
cp -a "$base" "$stage"
rm -f "$stage/.stamp"
cp -a "$kdir/lib" "$stage/"
kmod depmod -b "$stage" "$kver"
if [ $rebuild = 1 ]; then
    ninja -C "$build" >"$out/ninja.log" 2>&1 || { cat "$out/ninja.log" >&2; die "ninja failed"; }
    tick "ninja -C $(basename "$build")"
fi
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet >"$out/install.log" 2>&1 ||
    { cat "$out/install.log" >&2; die "meson install failed"; }
rm -rf "$stage"/usr/local/share/man "$stage"/usr/local/include
mkdir -p "$stage/xen/bin" "$stage/xen/guest" "$stage/xen/domu"
for p in $TEST_PROGS; do
    [ -x "$build/tests/xen/$p" ] || die "$build/tests/xen/$p is not built"
    cp "$build/tests/xen/$p" "$stage/xen/bin/"
done
cp -p "$here"/guest/* "$stage/xen/guest/"
chmod 755 "$stage"/xen/guest/*.sh
cp "$kdir/vmlinux" "$out/domu.img" "$stage/xen/domu/"
cp "$here/init" "$stage/init"
chmod 755 "$stage/init"
tick "install the project"

# Libraries the project's ELF files need and dom0 lacks come from this host
# (the same Debian release the binaries were built on).
is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }
libdirs="$stage/lib/x86_64-linux-gnu $stage/usr/lib/x86_64-linux-gnu $stage/usr/local/lib/x86_64-linux-gnu"
copied=0
for lib in $(find "$stage/usr/local" "$stage/xen/bin" -type f | while read -r f; do
        is_elf "$f" || continue
        LD_LIBRARY_PATH=$stage/usr/local/lib/x86_64-linux-gnu ldd "$f" 2>/dev/null |
            awk -v f="$f" '/not found/ {print "MISSING:" $1 "(" f ")"} $2 == "=>" && $3 ~ /^\// {print $3}'
    done | sort -u); do
    case $lib in MISSING:*) die "${lib#MISSING:}: library not found on this host" ;; esac
    name=$(basename "$lib")
    found=0
    for d in $libdirs; do [ -e "$d/$name" ] && found=1; done
    [ $found = 1 ] && continue
    cp -L "$lib" "$stage/usr/lib/x86_64-linux-gnu/$name"
    copied=$((copied + 1))
done
ldconfig -r "$stage" 2>"$out/ldconfig.log" || { cat "$out/ldconfig.log" >&2; die "ldconfig failed"; }
tick "libraries ($copied copied from the host)"

# --- 7. pack -------------------------------------------------------------------------
(cd "$stage" && find . | "$stage/bin/busybox" cpio -o -H newc 2>/dev/null) | z >"$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
tick "pack initrd.img ($(($(stat -c %s "$out/initrd.img") / 1048576)) MB)"
d=$(($(us "$EPOCHREALTIME") - $(us "$t_start")))
printf 'build.sh: ready in %d.%01ds: %s, %s, %s\n' $((d / 1000000)) $((d % 1000000 / 100000)) \
    "$out/xen.elf" "$kdir/vmlinux" "$out/initrd.img"
