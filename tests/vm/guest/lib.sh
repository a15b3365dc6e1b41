# tests/vm/guest/lib.sh: helpers for the guest scripts (POSIX sh: busybox ash
# runs it). A guest script starts with
#   . "${VM_LIB:-/vm/guest/lib.sh}"
# and then uses:
#   t NAME CMD...        run a check: prints @@PASS NAME or @@FAIL NAME and
#                        returns CMD's status (so `t x cmd || exit 1` aborts)
#   vm_skip NAME WHY     report a check as skipped
#   vm_wait SECS CMD...  retry CMD every half second until it succeeds
#   vm_rdma_up           soft-RoCE: rxe0 on dummy0 (192.0.2.1/32); exports
#                        VMIO_RDMA_ADDR and VMIO_RDMA_DEV
#   vm_export FILE [NAME] hand FILE to the host: run.sh writes it as NAME
#                        (default: its basename) into its --out-dir
# The project is installed under /usr/local (on PATH); extra build-tree
# executables are under /vm/build/, source files under /vm/src/.

VM_STATE=${VM_STATE:-/run/vm}
mkdir -p "$VM_STATE"

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
        echo "$_t_name" >>"$VM_STATE/fails"
        return $_t_rc
    fi
}

vm_skip() {
    echo "@@SKIP $1 (${2:-no reason given})"
}

vm_wait() {
    _w_n=$(($1 * 2))
    shift
    while [ $_w_n -gt 0 ]; do
        "$@" && return 0
        sleep 0.5
        _w_n=$((_w_n - 1))
    done
    echo "vm_wait: gave up on: $*" >&2
    return 1
}

# rdma_cm does not resolve routes over loopback with rxe (rping on 127.0.0.1
# fails with ENODEV), so the soft-RoCE device sits on a dummy netdev.
vm_rdma_up() {
    VMIO_RDMA_ADDR=192.0.2.1
    VMIO_RDMA_DEV=rxe0
    export VMIO_RDMA_ADDR VMIO_RDMA_DEV
    modprobe -a rdma_rxe ib_uverbs rdma_ucm dummy || return 1
    ip link show dummy0 >/dev/null 2>&1 || ip link add dummy0 type dummy || return 1
    ip -o addr show dev dummy0 | grep -q " $VMIO_RDMA_ADDR/" ||
        ip addr add "$VMIO_RDMA_ADDR/32" dev dummy0 || return 1
    # Jumbo frames, as RoCE deployments use: rxe then runs a 4096-byte
    # IB MTU instead of 1024 (a quarter of the packets per byte).
    ip link set dummy0 mtu 9000 || return 1
    ip link set dummy0 up || return 1
    [ -e "/sys/class/infiniband/$VMIO_RDMA_DEV" ] ||
        rdma link add "$VMIO_RDMA_DEV" type rxe netdev dummy0 || return 1
}

# Printed as base64 between markers; kernel messages are held back meanwhile
# and run.sh checks the md5 sum.
vm_export() {
    [ -f "$1" ] || { echo "vm_export: no such file: $1" >&2; return 1; }
    _e_name=$(basename "${2:-$1}" | tr -c 'A-Za-z0-9._\n-' '_')
    _e_level=$(cut -f1 /proc/sys/kernel/printk)
    echo 1 >/proc/sys/kernel/printk
    echo "@@FILE-BEGIN $_e_name"
    base64 <"$1"
    echo "@@FILE-END $_e_name $(md5sum <"$1" | cut -d' ' -f1)"
    echo "$_e_level" >/proc/sys/kernel/printk
}
