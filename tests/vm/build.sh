#!/bin/bash
# tests/vm/build.sh: prepare a Linux guest for tests/vm/run.sh.
#
#   tests/vm/build.sh [--build-dir DIR] [--out DIR] [--script PATH]... [--no-rebuild]
#
# Produces, in the out dir (default <build-dir>/vm):
#   kernel/     Debian's own kernel (linux-image-amd64) as an uncompressed
#               vmlinux (QEMU boots the ELF directly, which saves the xz
#               decompression, about 8 s under TCG) and the modules listed
#               below (cached)
#   base/       Debian userspace for the guest (cached)
#   initrd.img  base/ + the modules + the project installed with `meson
#               install --destdir`, the libraries it needs, the test
#               executables listed below and tests/vm/guest/: repacked on
#               every run (a few seconds)
# Everything downloaded is kept in <out>/debs. Needs: apt-get (Debian 12),
# dpkg-deb, xz, lz4 (or gzip), ldd, ldconfig, meson. Installs qemu-system-x86
# with apt-get when it is missing and we are root.
# Exit status: 0 ok, 77 when QEMU or the kernel cannot be obtained, 1 else.
#
# Optional second root file system (used by scripts/migrate-corpus.sh): with
# VM_EXTRA_PKGS="pkg..." set, those packages and their Depends closure (plus
# busybox-static, minus the packages matching the regex VM_EXTRA_EXCLUDE,
# by default the EXCLUDE list below) are
# unpacked into <out>/extra/ and written as the ext4 image <out>/extra.img
# (cached), for a guest script to mount read-only from a virtio disk
# (run.sh --disk) and chroot into; the modules virtio_pci, virtio_blk and
# ext4 are added. The default out dir is then <build-dir>/vm-extra, so the
# guest of the vm suite stays as it is.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)

# --- what goes into the guest ---------------------------------------------
# Debian packages (their Depends closure is added).
GUEST_PKGS="busybox-static kmod iproute2 bash rdma-core ibverbs-utils ibverbs-providers
  rdmacm-utils perftest lvm2 open-iscsi tgt"
# Never used by a busybox guest without dpkg, systemd, perl or PAM.
EXCLUDE='^(perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|cdebconf|debconf|libelogind0|usrmerge|usr-is-merged|adduser|passwd|libpam.*|install-info|dpkg|tar|libsemanage.*|libdebian-installer4|libnewt.*|libslang2|libtextwrap1|udev|init-system-helpers|lsb-base|sysvinit-utils|readline-common|libaudit.*|libdb5.3|libgdbm.*|libcap2-bin)$'
# Kernel modules (their dependencies are added).
MODULES="rdma_rxe ib_uverbs rdma_ucm ib_umad veth dummy loop sd_mod sg iscsi_tcp
  dm_mod dm_mirror target_core_file target_core_iblock iscsi_target_mod configfs
  virtio_pci virtio_blk
  dm_raid raid1 md_mod dm_region_hash dm_log
  crc32_generic crc32-pclmul crc32c_generic crc32c-intel crc64_rocksoft_generic"
# Executables of the build dir that are not installed but that guest scripts
# may run, as globs relative to the build dir; they land in /vm/build/<path>.
EXTRA_BUILD="tests/unit/test-* tests/integration/vmio-test-* tests/vm/memstress bench/memlend-walker"
# Files of the source tree that guest scripts may use; in /vm/src/<path>.
EXTRA_SRC="tests/integration/*.sh"
# The optional extra root file system (see the top of this file).
VM_EXTRA_PKGS=${VM_EXTRA_PKGS:-}
VM_EXTRA_EXCLUDE=${VM_EXTRA_EXCLUDE:-$EXCLUDE}
[ -z "$VM_EXTRA_PKGS" ] || MODULES="$MODULES virtio_pci virtio_blk ext4"

# --- arguments ---------------------------------------------------------------
build=$src/build
out=
rebuild=1
scripts=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --script) scripts+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
    --no-rebuild) rebuild=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
die() { echo "build.sh: error: $*" >&2; exit 1; }
skip() { echo "build.sh: SKIP: $*"; exit 77; }
[ -f "$build/build.ninja" ] || die "$build is not a meson build dir (meson setup $build)"
build=$(cd "$build" && pwd)
if [ -n "$VM_EXTRA_PKGS" ]; then out=${out:-$build/vm-extra}; else out=${out:-$build/vm}; fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
for s in "${scripts[@]}"; do [ -f "$s" ] || die "no such script: $s"; done
# One build at a time per out dir.
exec 9>"$out/.lock"
command -v flock >/dev/null && flock 9

# --- timings -----------------------------------------------------------------
t_start=$EPOCHREALTIME
t_last=$t_start
us() { local t=${1/./}; echo $((10#$t)); }   # EPOCHREALTIME in microseconds
tick() { # tick LABEL: print the time since the previous tick
    local now=$EPOCHREALTIME d
    d=$(($(us "$now") - $(us "$t_last")))
    printf 'build.sh: %-44s %3d.%01ds\n' "$1" $((d / 1000000)) $((d % 1000000 / 100000))
    t_last=$now
}
is_root() { [ "$(id -u)" -eq 0 ]; }
apt_updated=0
apt_update() { # once per run, and only as root
    [ $apt_updated = 0 ] && is_root || return 1
    apt_updated=1
    echo "build.sh: apt-get update"
    apt-get update -qq >"$out/apt-update.log" 2>&1
}

# --- 1. QEMU -----------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
    is_root && command -v apt-get >/dev/null ||
        skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    echo "build.sh: installing qemu-system-x86"
    inst() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 >"$out/apt-qemu.log" 2>&1; }
    inst || { apt_update && inst; } ||
        skip "qemu-system-x86 could not be installed (see $out/apt-qemu.log)"
    tick "install qemu-system-x86"
fi

# --- 2. download the kernel and the guest packages (cached) --------------------
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    skip "apt-get and dpkg-deb are needed to fetch Debian's kernel"
debs=$out/debs
mkdir -p "$debs"
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg=$(kernel_pkg)
[ -n "$kpkg" ] || { apt_update && kpkg=$(kernel_pkg); } || true
if [ -z "$kpkg" ]; then # no package lists: use a kernel downloaded before
    kdeb=$(ls -t "$debs"/linux-image-*-amd64_*.deb 2>/dev/null | head -1)
    [ -n "$kdeb" ] || skip "cannot find Debian's linux-image-amd64 (apt-get update?)"
    kpkg=$(basename "$kdeb")
    kpkg=${kpkg%%_*}
fi
kver=${kpkg#linux-image-}

# The closure is computed from the archive, not from what the host has.
pkglist=$out/guest-pkgs.txt
key="$(echo $GUEST_PKGS) | $EXCLUDE"
if [ ! -s "$pkglist" ] || [ "$(head -1 "$pkglist")" != "$key" ]; then
    sel=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances $GUEST_PKGS 2>/dev/null |
        grep -v '^[ <]' | sort -u | grep -Ev "$EXCLUDE" || true)
    [ -n "$sel" ] || die "apt-cache found none of: $GUEST_PKGS (apt-get update?)"
    { echo "$key"; echo "$sel"; } >"$pkglist"
fi
need=()
for p in $kpkg $(tail -n +2 "$pkglist"); do
    compgen -G "$debs/${p}_*.deb" >/dev/null || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "build.sh: downloading ${#need[@]} packages"
    get() { (cd "$debs" && apt-get download "${need[@]}") >"$out/download.log" 2>&1; }
    get || { apt_update && get; } || {
        compgen -G "$debs/${kpkg}_*.deb" >/dev/null ||
            skip "cannot download $kpkg (see $out/download.log)"
        die "cannot download the guest packages (see $out/download.log)"
    }
    tick "download packages"
fi
kdeb=$(ls "$debs/${kpkg}"_*.deb | head -1)

# --- 3. the base: Debian userspace, configured (cached) ------------------------
# Rebuilt when the package set or this section changes.
base=$out/base
section() { sed -n "/^# --- $1\\./,/^# --- $(($1 + 1))\\./p" "$0"; }
# shellcheck disable=SC2010 # .deb names are plain
stamp=$( (echo "$GUEST_PKGS $EXCLUDE"; ls "$debs" | grep -v '^linux-image'; section 3) | sha256sum | cut -c1-16)
if [ "$(cat "$base/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$base"
    mkdir -p "$base"
    for p in $(tail -n +2 "$pkglist"); do
        dpkg-deb -x "$(ls "$debs/${p}"_*.deb | head -1)" "$base"
    done
    rm -rf "$base"/usr/share/{doc,man,locale,info,lintian,bash-completion,bug}
    # Configuration for a guest without udev and systemd.
    mkdir -p "$base"/{proc,sys,dev,run,tmp,mnt,root,var/lib,var/lock,etc/iscsi,etc/lvm}
    ln -sfn /run "$base/var/run"
    [ -e "$base/bin/sh" ] || ln -s busybox "$base/bin/sh"
    # iscsid serves iscsiadm only if getpwuid(peer uid) is "root".
    echo 'root:x:0:0:root:/root:/bin/sh' >"$base/etc/passwd"
    echo 'root:x:0:' >"$base/etc/group"
    echo 'vm' >"$base/etc/hostname"
    printf '127.0.0.1 localhost\n192.0.2.1 vm\n' >"$base/etc/hosts"
    echo "InitiatorName=iqn.1993-08.org.debian:01:vmio-guest" >"$base/etc/iscsi/initiatorname.iscsi"
    [ ! -f "$base/etc/iscsi/iscsid.conf" ] ||
        sed -i 's|^iscsid.startup.*|iscsid.startup = /sbin/iscsid|' "$base/etc/iscsi/iscsid.conf"
    # LVM without udev, lvmetad, dmeventd or lvmpolld.
    cat >"$base/etc/lvm/lvm.conf" <<'EOF'
devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { use_lvmpolld = 0 }
EOF
    # Where `meson install` puts the library (prefix /usr/local by default).
    printf '%s\n' /usr/local/lib/x86_64-linux-gnu /usr/local/lib \
        /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu >"$base/etc/ld.so.conf"
    rm -rf "$base/etc/ld.so.conf.d"
    echo "$stamp" >"$base/.stamp"
    tick "unpack userspace ($(du -sm "$base" | cut -f1) MB)"
fi
# The guest's own kmod, run here through the guest's own ld.so.
kmod() { # kmod depmod|modprobe ARGS...
    local l=$base/lib/x86_64-linux-gnu
    "$l/ld-linux-x86-64.so.2" --library-path "$l:$base/usr/lib/x86_64-linux-gnu" \
        --argv0 "$1" "$base/bin/kmod" "${@:2}"
}

# --- 4. the kernel: vmlinux and the modules needed (cached) ---------------------
kdir=$out/kernel
kstamp=$( (basename "$kdeb"; echo $MODULES; section 4) | sha256sum | cut -c1-16)
if [ "$(cat "$kdir/.stamp" 2>/dev/null)" != "$kstamp" ]; then
    rm -rf "$kdir" "$out/kernel.tmp"
    kt=$out/kernel.tmp
    mkdir -p "$kdir" "$kt"
    dpkg-deb -x "$kdeb" "$kt"
    # vmlinuz's payload is xz: cut it out, QEMU boots the ELF directly.
    off=$(grep -obUaP '\xfd7zXZ\x00' "$kt/boot/vmlinuz-$kver" | head -1 | cut -d: -f1)
    [ -n "$off" ] || die "no xz payload in vmlinuz-$kver"
    tail -c +$((off + 1)) "$kt/boot/vmlinuz-$kver" | xz -dc --single-stream \
        >"$kdir/vmlinux" 2>/dev/null || true
    [ -s "$kdir/vmlinux" ] || die "could not extract vmlinux from vmlinuz-$kver"
    # Only the modules listed in MODULES and what they depend on.
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

# --- 5. the project: base + modules + meson install + test files (every run) ---
stage=$out/stage
rm -rf "$stage"
cp -a "$base" "$stage"
cp -a "$kdir/lib" "$stage/"
kmod depmod -b "$stage" "$kver"
rm -f "$stage/.stamp"
if [ $rebuild = 1 ]; then
    ninja -C "$build" >"$out/ninja.log" 2>&1 || { cat "$out/ninja.log" >&2; die "ninja -C $build failed"; }
    tick "ninja -C $(basename "$build")"
fi
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet >"$out/install.log" 2>&1 ||
    { cat "$out/install.log" >&2; die "meson install failed"; }
rm -rf "$stage"/usr/local/share/man "$stage"/usr/local/include

mkdir -p "$stage/vm/build" "$stage/vm/src" "$stage/vm/guest" "$stage/vm/scripts"
copy_globs() { # copy_globs FROM TO "GLOB...": regular files, relative paths kept
    local from=$1 to=$2 globs g f
    set -f
    # shellcheck disable=SC2206 # split on purpose, not expanded here
    globs=($3)
    set +f
    for g in "${globs[@]}"; do
        for f in "$from"/$g; do
            [ -f "$f" ] || continue
            mkdir -p "$to/$(dirname "${f#"$from"/}")"
            cp -p "$f" "$to/${f#"$from"/}"
        done
    done
}
copy_globs "$build" "$stage/vm/build" "$EXTRA_BUILD"
copy_globs "$src" "$stage/vm/src" "$EXTRA_SRC"
cp -p "$here"/guest/* "$stage/vm/guest/"
cp "$here/init" "$stage/init"
chmod 755 "$stage/init"

# The scripts the guest runs, in order: the --script files, or else every
# tests/vm/guest/NN-*.sh.
if [ ${#scripts[@]} -gt 0 ]; then
    i=0
    for s in "${scripts[@]}"; do
        i=$((i + 1))
        dst=/vm/scripts/$(printf '%02d' $i)-$(basename "$s")
        cp "$s" "$stage$dst"
        echo "$dst"
    done
else
    for s in "$stage"/vm/guest/[0-9][0-9]-*.sh; do
        [ -f "$s" ] && echo "${s#"$stage"}"
    done
fi >"$stage/vm/run-list"
chmod 755 "$stage"/vm/guest/*.sh "$stage"/vm/scripts/* 2>/dev/null || true
tick "install the project"

# Libraries that the project's ELF files need and the guest lacks are copied
# from this host (the same Debian 12 the binaries were built against).
is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }
libdirs="$stage/lib/x86_64-linux-gnu $stage/usr/lib/x86_64-linux-gnu $stage/usr/local/lib/x86_64-linux-gnu"
copied=0
for lib in $(find "$stage/usr/local" "$stage/vm/build" -type f | while read -r f; do
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

# The extra root file system (only with VM_EXTRA_PKGS; cached).
# extra-begin
if [ -n "$VM_EXTRA_PKGS" ]; then
    xkey="busybox-static $(echo $VM_EXTRA_PKGS) | $VM_EXTRA_EXCLUDE"
    xlist=$out/extra-pkgs.txt
    if [ ! -s "$xlist" ] || [ "$(head -1 "$xlist")" != "$xkey" ]; then
        sel=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances busybox-static $VM_EXTRA_PKGS 2>/dev/null |
            grep -v '^[ <]' | sort -u | grep -Ev "$VM_EXTRA_EXCLUDE" || true)
        [ -n "$sel" ] || die "apt-cache found none of: $VM_EXTRA_PKGS"
        { echo "$xkey"; echo "$sel"; } >"$xlist"
    fi
    need=()
    for p in $(tail -n +2 "$xlist"); do
        compgen -G "$debs/${p}_*.deb" >/dev/null || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "build.sh: downloading ${#need[@]} extra packages"
        get() { (cd "$debs" && apt-get download "${need[@]}") >"$out/download-extra.log" 2>&1; }
        get || { apt_update && get; } ||
            die "cannot download the extra packages (see $out/download-extra.log)"
    fi
    xstamp=$( (cat "$xlist"; sed -n '/^# extra-begin/,/^# extra-end/p' "$0") | sha256sum | cut -c1-16)
    if [ "$(cat "$out/extra/.stamp" 2>/dev/null)" != "$xstamp" ] || [ ! -s "$out/extra.img" ]; then
        xt=$out/extra
        rm -rf "$xt" "$out/extra.img"
        mkdir -p "$xt"
        for p in $(tail -n +2 "$xlist"); do
            dpkg-deb -x "$(ls "$debs/${p}"_*.deb | head -1)" "$xt"
        done
        rm -rf "$xt"/usr/share/{doc,man,info,lintian,bash-completion,bug}
        mkdir -p "$xt"/{proc,sys,dev,run,tmp,root,var/lib,var/run}
        [ -e "$xt/bin/sh" ] || ln -s busybox "$xt/bin/sh"
        printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'postgres:x:100:100:postgres:/tmp:/bin/sh' \
            'nobody:x:65534:65534:nobody:/nonexistent:/bin/sh' >"$xt/etc/passwd"
        printf '%s\n' 'root:x:0:' 'postgres:x:100:' 'nogroup:x:65534:' >"$xt/etc/group"
        printf '%s\n' /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu >"$xt/etc/ld.so.conf"
        rm -rf "$xt/etc/ld.so.conf.d"
        ldconfig -r "$xt" 2>/dev/null || true
        echo "$xstamp" >"$xt/.stamp"
        mb=$(du -sm "$xt" | cut -f1)
        mkfs.ext4 -q -F -L vmio-extra -d "$xt" "$out/extra.img" $((mb * 5 / 4 + 64))M \
            >"$out/mkfs-extra.log" 2>&1 || { cat "$out/mkfs-extra.log" >&2; die "mkfs.ext4 failed"; }
        tick "extra root file system extra.img ($mb MB)"
    fi
fi
# extra-end

# --- 6. pack -------------------------------------------------------------------
if command -v lz4 >/dev/null; then z() { lz4 -l -q -1; }; else z() { gzip -1; }; fi
(cd "$stage" && find . | "$stage/bin/busybox" cpio -o -H newc 2>/dev/null) | z >"$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
tick "pack initrd.img ($(($(stat -c %s "$out/initrd.img") / 1048576)) MB)"
d=$(($(us "$EPOCHREALTIME") - $(us "$t_start")))
printf 'build.sh: ready in %d.%01ds: %s, %s\n' $((d / 1000000)) $((d % 1000000 / 100000)) \
    "$kdir/vmlinux" "$out/initrd.img"
