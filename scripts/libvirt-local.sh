#!/bin/bash
# A private libvirt daemon with the QEMU driver, for libvmio's VM-group tests
# and for trying `vmio-group` on real QEMU domains by hand. No systemd, no
# change to the host's libvirt: Debian 12's monolithic libvirtd (libvirt 9.0 there
# ships no modular virtqemud) runs as root in a mount namespace of its own, in
# which a base directory is bind-mounted over libvirt's system paths
# (/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
# /var/log/libvirt). Its socket lives in the base directory, so a system
# libvirtd, if any, never sees it and is never seen by it.
#
#   libvirt-local.sh start    start the daemon (if not running), wait until
#                             it answers, print the connect URI on stdout
#   libvirt-local.sh stop     destroy its running domains, stop it, remove
#                             the base directory (keep it: --keep)
#   libvirt-local.sh uri      print the connect URI
#   libvirt-local.sh status   non-zero if the daemon is not answering
#
# Options: --dir DIR (base directory; default $VMIO_LIBVIRT_DIR, else
# ${TMPDIR:-/tmp}/vmio-libvirt), --keep (stop).
#
# The URI is qemu:///system?socket=DIR/sock/libvirt-sock: the privileged
# ("system") QEMU driver, so that libvirt manages the domains' cgroups
# (cpu.shares/cpu.weight, cpuset per vCPU and for the emulator). Domains use
# <domain type='qemu'> (TCG) where there is no KVM. The daemon runs QEMU as
# root without a security driver, and writes QEMU's output to files (no
# virtlogd). Debian's libvirt wants the user "libvirt-qemu" to exist even
# when QEMU runs as root; when the host lacks it, the namespace sees a copy
# of /etc/passwd and /etc/group that has it (the host's files are not
# touched). Empty mount points are created for the paths above if missing.
#
# Installs nothing: scripts/install-deps.sh brings libvirt-daemon,
# libvirt-daemon-driver-qemu, libvirt-clients and qemu-system-x86.
# Exit status: 0 ok, 1 error, 2 usage, 77 when the daemon cannot run here
# (not root, a package missing, no mount namespaces).
set -euo pipefail

dir=${VMIO_LIBVIRT_DIR:-${TMPDIR:-/tmp}/vmio-libvirt}
keep=0
cmd=
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --dir) dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    start | stop | uri | status) cmd=$1; shift ;;
    *) echo "libvirt-local.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$cmd" ] || { usage >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

say() { echo "libvirt-local.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }
cannot() { say "cannot run here: $*"; exit 77; }

uri="qemu:///system?socket=$dir/sock/libvirt-sock"
vsh() { virsh -q -c "$uri" "$@"; }
alive() {
    local pid
    pid=$(cat "$dir/libvirtd.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q libvirtd
}
answers() { vsh uri >/dev/null 2>&1; }

start() {
    if alive && answers; then
        echo "$uri"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || cannot "needs root (the privileged QEMU driver manages cgroups)"
    local libvirtd qemudrv
    libvirtd=$(command -v libvirtd || echo /usr/sbin/libvirtd)
    [ -x "$libvirtd" ] || cannot "libvirtd not installed (apt-get install libvirt-daemon)"
    qemudrv=$(ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so 2>/dev/null | head -1 || true)
    [ -n "$qemudrv" ] || cannot "libvirt's QEMU driver not installed (libvirt-daemon-driver-qemu)"
    command -v virsh >/dev/null || cannot "virsh not installed (libvirt-clients)"
    command -v qemu-system-x86_64 >/dev/null || cannot "qemu-system-x86_64 not installed"
    command -v unshare >/dev/null || cannot "unshare (util-linux) not installed"
    unshare -m --propagation private true 2>/dev/null || cannot "no mount namespaces (unshare -m failed)"

    rm -rf "$dir/sock" "$dir/run"
    mkdir -p "$dir"/{sock,run,lib,cache,log,etc/qemu}
    cat >"$dir/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$dir/sock"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$dir/libvirtd.log"
EOF
    cat >"$dir/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
EOF
    local binds="" p
    binds+="$dir/etc:/etc/libvirt $dir/run:/run/libvirt $dir/lib:/var/lib/libvirt "
    binds+="$dir/cache:/var/cache/libvirt $dir/log:/var/log/libvirt"
    if ! getent passwd libvirt-qemu >/dev/null || ! getent group libvirt-qemu >/dev/null; then
        cp /etc/passwd "$dir/passwd"
        cp /etc/group "$dir/group"
        getent passwd libvirt-qemu >/dev/null ||
            echo 'libvirt-qemu:x:64055:64055:libvirt-local:/var/lib/libvirt:/usr/sbin/nologin' >>"$dir/passwd"
        getent group libvirt-qemu >/dev/null || echo 'libvirt-qemu:x:64055:' >>"$dir/group"
        binds+=" $dir/passwd:/etc/passwd $dir/group:/etc/group"
    fi
    for p in $binds; do
        [ -e "${p#*:}" ] || mkdir -p "${p#*:}"
    done
    # The namespace: bind the private paths, then become libvirtd.
    cat >"$dir/ns-start.sh" <<EOF
#!/bin/bash
set -e
for p in $binds; do mount --bind "\${p%%:*}" "\${p#*:}"; done
exec "$libvirtd" -f "$dir/etc/libvirtd.conf" -p "$dir/libvirtd.pid"
EOF
    chmod +x "$dir/ns-start.sh"
    rm -f "$dir/libvirtd.pid"
    setsid unshare -m --propagation private "$dir/ns-start.sh" \
        </dev/null >"$dir/libvirtd.out" 2>&1 &
    local i
    for i in $(seq 1 300); do
        if answers; then
            echo "$uri"
            return 0
        fi
        if [ "$i" -gt 10 ] && ! kill -0 $! 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    say "libvirtd did not come up; its output and log:"
    tail -n 20 "$dir/libvirtd.out" "$dir/libvirtd.log" >&2 2>/dev/null || true
    kill "$(cat "$dir/libvirtd.pid" 2>/dev/null)" 2>/dev/null || true
    die "libvirtd failed to start"
}

stop() {
    local d pid f i
    if alive && answers; then
        for d in $(vsh list --name 2>/dev/null); do
            vsh destroy "$d" >/dev/null 2>&1 || say "warning: could not destroy $d"
        done
    fi
    if alive; then
        pid=$(cat "$dir/libvirtd.pid")
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        [ ! -d "/proc/$pid" ] || kill -9 "$pid" 2>/dev/null || true
    fi
    # QEMU processes a dead daemon left behind (their pid files).
    for f in "$dir"/run/qemu/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q qemu-system; then
            say "killing QEMU $pid left by the daemon ($(basename "$f" .pid))"
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    if [ "$keep" -eq 0 ]; then
        rm -rf "$dir"
    fi
}

case $cmd in
start) start ;;
stop) stop ;;
uri) echo "$uri" ;;
status) alive && answers ;;
esac
