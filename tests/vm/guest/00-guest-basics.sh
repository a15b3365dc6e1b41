#!/bin/sh
# What every later guest script relies on: the project's binaries run, soft-
# RoCE works (verbs and rdma_cm) and the iSCSI/LVM tools are there.
. "${VM_LIB:-/vm/guest/lib.sh}"

# The installed project (meson install --destdir) and its libraries.
t vmiod_version vmiod --version
t vmio_cp_version vmio-cp --version
t vmio_bench_version vmio-bench --version
# A build-tree test executable (EXTRA_BUILD in build.sh).
if [ -x /vm/build/tests/unit/test-uri ]; then
    t unit_test_uri /vm/build/tests/unit/test-uri
else
    vm_skip unit_test_uri "built without Check"
fi

# Soft-RoCE: rxe0 on dummy0, its port active, rping through rdma_cm.
t rdma_up vm_rdma_up
rdma link show
port_active() { ibv_devinfo -d "$VMIO_RDMA_DEV" | grep -q PORT_ACTIVE; }
t rxe0_port_active vm_wait 20 port_active
ibv_devinfo -d "$VMIO_RDMA_DEV" >/tmp/ibv_devinfo.txt 2>&1
cat /tmp/ibv_devinfo.txt
t export_file vm_export /tmp/ibv_devinfo.txt "ibv_devinfo-$VMIO_RDMA_DEV.txt"

rping_client() { # the server may need a moment to listen
    for _i in 1 2 3 4 5; do
        timeout 30 rping -c -a "$VMIO_RDMA_ADDR" -C 10 -v >/tmp/rping-client.log 2>&1 && break
        sleep 1
    done
    tail -n 2 /tmp/rping-client.log
    [ "$(grep -c 'ping data' /tmp/rping-client.log)" -eq 10 ]
}
timeout 60 rping -s -a "$VMIO_RDMA_ADDR" -C 10 >/tmp/rping-server.log 2>&1 &
server=$!
t rping rping_client
wait $server
echo "rping server exit status $?"

# Tools that the iSCSI/LVM tests use.
t iscsiadm_version iscsiadm --version
t tgtadm_present command -v tgtd tgtadm
t lvm_version lvm version
t perftest_present command -v ib_write_bw ib_read_lat
t storage_modules modprobe -a loop dm_mod dm_mirror iscsi_tcp sd_mod
