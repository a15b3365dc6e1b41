#!/bin/sh
# Memory lending through LIO: vmio-memlend lender --backend lio makes the
# lease's LUN through configfs (fileio backstore on its tmpfs file, TPG
# with CHAP, portal 127.0.0.1:3280); the kernel initiator logs in with the
# derived CHAP credentials (a wrong secret is refused), writes and reads
# back data that must land in the tmpfs file; libiscsi does the same from
# userspace; a lease released while still logged in keeps its LUN; after
# logout the lender tears it all down (configfs and the file).
. "${VM_LIB:-/vm/guest/lib.sh}"

B=/vm/build
RW=$B/tests/integration/vmio-test-iscsi-rw
export PATH=$PATH:/usr/local/sbin:/usr/local/bin
ip link set lo up
CFS=/sys/kernel/config
PORTAL=127.0.0.1:3280
if [ ! -x "$RW" ]; then
    vm_skip memlend_lio "vmio-test-iscsi-rw not built (libiscsi-dev missing)"
    exit 0
fi
t lio_modules modprobe -a configfs target_core_mod target_core_file iscsi_target_mod \
    iscsi_tcp sd_mod || exit 1
grep -q " $CFS " /proc/mounts || mount -t configfs none $CFS
mkdir -p /run/lock /var/lock /etc/iscsi/nodes /var/lib/iscsi
pidof iscsid >/dev/null || t iscsid sh -c 'iscsid && sleep 1' || exit 1

printf 'lio-test-secret-0123456789abcdef' >/tmp/lio-secret && chmod 600 /tmp/lio-secret
rm -f /tmp/lio-db.sqlite /tmp/lio-mgr.port
vmio-memlend manager --listen 127.0.0.1:0 --db /tmp/lio-db.sqlite --secret-file /tmp/lio-secret \
    --port-file /tmp/lio-mgr.port --foreground >/tmp/lio-manager.log 2>&1 &
MGR_PID=$!
t manager_up vm_wait 20 test -s /tmp/lio-mgr.port || exit 1
MGR=127.0.0.1:$(cat /tmp/lio-mgr.port)
STATE=/tmp/lio-state
vmio-memlend lender --manager "$MGR" --secret-file /tmp/lio-secret --name guestlio \
    --portal $PORTAL --backend lio --state-dir $STATE --reserve 64M --max-lend 64M \
    --interval 200 --calm 1 >/tmp/lio-lender.log 2>&1 &
LENDER_PID=$!
offering() { grep -Eq '(registered|offer) .*offering [1-9]' /tmp/lio-lender.log; }
t lender_offers vm_wait 30 offering || { cat /tmp/lio-lender.log; exit 1; }
sleep 1

SIZE=$((32 * 1048576))
request() {
    "$RW" request "$MGR" /tmp/lio-secret borrower1 $SIZE >/tmp/lio-lease.txt &&
        read -r ID IQN LUN _ </tmp/lio-lease.txt && [ "$LUN" = 1 ]
}
t lio_request request || { cat /tmp/lio-lender.log /tmp/lio-manager.log; exit 1; }
read -r ID IQN LUN _ </tmp/lio-lease.txt
TP=$CFS/target/iscsi/$IQN/tpgt_1
t lio_configfs sh -c "[ \"\$(cat $TP/enable)\" = 1 ] && [ \"\$(cat $TP/attrib/authentication)\" = 1 ] &&
    [ -d $TP/np/$PORTAL ] && [ -L $TP/lun/lun_1/guestlio.lease$ID ]"
t lio_tmpfs_file sh -c "[ \$(stat -c %s $STATE/mem/lease-$ID) = $SIZE ]"

# libiscsi, userspace, with the derived CHAP credentials.
read -r CUSER CSECRET <<EOF2
$("$RW" chap /tmp/lio-secret "$IQN")
EOF2
URL="iscsi://$CUSER%$CSECRET@$PORTAL/$IQN/1"
t lio_libiscsi_write "$RW" write "$URL" 11 $SIZE
t lio_libiscsi_verify "$RW" verify "$URL" 11 $SIZE
wrong_seed() { ! "$RW" verify "$URL" 12 1048576 2>/dev/null; }
t lio_libiscsi_wrong_seed_fails wrong_seed
no_chap() { ! "$RW" verify "iscsi://$PORTAL/$IQN/1" 11 1048576 2>/dev/null; }
t lio_no_chap_refused no_chap

# The kernel initiator: a wrong secret first, then the right one.
node() { iscsiadm -m node -T "$IQN" -p $PORTAL "$@"; }
setup_node() { # setup_node SECRET
    node -o delete 2>/dev/null
    node -o new >/dev/null &&
        node -o update -n node.session.auth.authmethod -v CHAP &&
        node -o update -n node.session.auth.username -v "$CUSER" &&
        node -o update -n node.session.auth.password -v "$1"
}
login() { timeout 60 iscsiadm -m node -T "$IQN" -p $PORTAL --login; }
wrong_login() { setup_node wrong-secret-0123456789abcdef && ! login; }
t lio_kernel_wrong_chap_refused wrong_login
t lio_kernel_setup setup_node "$CSECRET"
t lio_kernel_login login
disk() { # the sd device of our session, through sysfs (LUN 1)
    for d in /sys/class/iscsi_session/session*/device/target*/*:*:*:1/block/*; do
        [ -e "$d" ] || continue
        s=${d%%/device/*}
        [ "$(cat "$s/targetname")" = "$IQN" ] && { basename "$d"; return 0; }
    done
    return 1
}
t lio_kernel_disk vm_wait 20 disk
SD=$(disk)
head -c 4194304 /dev/urandom >/tmp/lio-rand
kernel_rw() {
    dd if=/tmp/lio-rand of=/dev/$SD bs=1M oflag=direct 2>/dev/null &&
        dd if=/dev/$SD bs=1M count=4 iflag=direct 2>/dev/null | cmp - /tmp/lio-rand &&
        head -c 4194304 $STATE/mem/lease-$ID | cmp - /tmp/lio-rand   # it is in the tmpfs file
}
t lio_kernel_rw_lands_in_tmpfs kernel_rw

# Released while logged in: the LUN stays. After logout: all gone.
t lio_release "$RW" release "$MGR" /tmp/lio-secret borrower1 "$ID"
sleep 2
t lio_kept_while_logged_in sh -c "[ -d $CFS/target/iscsi/$IQN ] && [ -e $STATE/mem/lease-$ID ]"
t lio_logout timeout 60 iscsiadm -m node -T "$IQN" -p $PORTAL --logout
node -o delete 2>/dev/null
gone() { [ ! -e "$CFS/target/iscsi/$IQN" ] && [ ! -e "$STATE/mem/lease-$ID" ] &&
    [ ! -e "$CFS/target/core/fileio_8646/guestlio.lease$ID" ]; }
t lio_torn_down vm_wait 20 gone
t lio_removed_event vm_wait 10 grep -q "removed lease $ID: " /tmp/lio-lender.log

kill -TERM $LENDER_PID
wait $LENDER_PID
t lio_lender_withdrawn grep -q withdrawn /tmp/lio-lender.log
kill $MGR_PID 2>/dev/null
wait $MGR_PID 2>/dev/null
cat /tmp/lio-lender.log
umount $STATE/mem 2>/dev/null
exit 0
