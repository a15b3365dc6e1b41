# tests/xen/guest/lib.sh: functions for the scripts that run in dom0 (POSIX
# sh, busybox ash). A script starts with
#   . "${XEN_LIB:-/xen/guest/lib.sh}"
# and then uses:
#   t NAME CMD...          a check: @@PASS NAME or @@FAIL NAME; returns
#                          CMD's status (`t x cmd || exit 1` aborts)
#   xen_skip NAME WHY      report a check as skipped
#   xen_wait SECS CMD...   retry CMD every half second until it succeeds
#   domu_create NAME [MB] [TYPE]
#                          start a domU (TYPE pvh, the default, or pv)
#                          running tests/xen/domu-init with MB of memory
#                          (default 128), wait for it to be up; prints its
#                          domid
#   domu_up NAME [MB] [TYPE]
#                          the domid of domU NAME, created as above if it
#                          does not exist (scripts share the booted domU)
#   domu_console NAME      the file xenconsoled writes its console to
# The project is installed under /usr/local (on PATH); the test programs
# of tests/xen are in /xen/bin, the domU's kernel and initramfs in
# /xen/domu.

XEN_STATE=${XEN_STATE:-/run/xentest}
mkdir -p "$XEN_STATE"
PATH=/xen/bin:$PATH

t() {
    _t_name=$1
    shift
    echo "--- $_t_name: $*"
    if "$@"; then
        echo "@@PASS $_t_name"
        return 0
    else
        _t_rc=$?
        echo "@@FAIL $_t_name (exit status $_t_rc)"
        echo "$_t_name" >>"$XEN_STATE/fails"
        return $_t_rc
    fi
}

xen_skip() {
    echo "@@SKIP $1 (${2:-no reason given})"
}

xen_wait() {
    _w_n=$(($1 * 2))
    shift
    while [ $_w_n -gt 0 ]; do
        "$@" && return 0
        sleep 0.5
        _w_n=$((_w_n - 1))
    done
    echo "xen_wait: gave up on: $*" >&2
    return 1
}

domu_console() {
    echo "/var/log/xen/console/guest-$1.log"
}

# A PVH domU needs tsc_mode="native" under QEMU TCG (it hangs at boot else).
domu_create() {
    _d_cfg=$XEN_STATE/$1.cfg
    cat >"$_d_cfg" <<CFG
name = "$1"
type = "${3:-pvh}"
kernel = "/xen/domu/vmlinux"
ramdisk = "/xen/domu/domu.img"
extra = "console=hvc0 rdinit=/init loglevel=3 panic=-1 mitigations=off cryptomgr.notests"
memory = ${2:-128}
vcpus = 1
on_crash = "preserve"
tsc_mode = "native"
CFG
    xl create "$_d_cfg" >&2 || return 1
    xen_wait 180 grep -q @@DOMU-UP "$(domu_console "$1")" || return 1
    xl domid "$1"
}

domu_up() {
    xl domid "$1" 2>/dev/null || domu_create "$@"
}
