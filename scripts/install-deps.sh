#!/bin/sh
# Installs, from Debian 12's own archive, everything libvmio needs to build,
# run its CLIs and run its whole test suite (real peers included: nbdkit,
# libnbd, qemu-img). Idempotent; needs root (or sudo).
set -eu

PKGS="
  build-essential meson ninja-build pkg-config scdoc
  check
  nettle-dev
  libibverbs-dev librdmacm-dev
  libxml2-dev libvirt-dev libxen-dev libhwloc-dev
  libsqlite3-dev libjson-c-dev libzstd-dev liblz4-dev libxxhash-dev zstd
  libgfarm-dev gfmd gfsd gfarm-client gfarm2fs fuse3 postgresql
  nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin
  qemu-utils fio
  tgt libiscsi-bin libiscsi-dev lvm2
  qemu-system-x86 lz4 xz-utils
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  dpkg-dev libglib2.0-dev zlib1g-dev
  clang libclang-rt-14-dev valgrind
  iproute2 procps xxd python3
"

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

missing=
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing="$missing $p"
done

if [ -n "$missing" ]; then
    echo "install-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
else
    echo "install-deps: everything already installed"
fi
