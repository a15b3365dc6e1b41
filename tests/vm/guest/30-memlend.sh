#!/bin/sh
# Memory lending in one guest: the borrower's drivers on a hand-made tgtd
# LUN (sysfs lookup, lvm reports, pvmove of a swap LV in use, raid1), then
# the whole cycle with manager, lenders (tgt) and vmio-swap while memstress
# keeps verifying every page it swapped: attach -> revoke -> detach twice,
# two LVs on two lenders at once, a failed attach rolled back, a lender
# killed in mirrored mode (no loss) and in plain mode (reported).
. "${VM_LIB:-/vm/guest/lib.sh}"

B=/vm/build
export PATH=$PATH:/usr/local/sbin:/usr/local/bin
ip link set lo up
modprobe -a loop dm_mod dm_mirror dm_raid raid1 iscsi_tcp sd_mod 2>/dev/null
mkdir -p /sys/fs/cgroup
grep -q " /sys/fs/cgroup " /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
mkdir -p /run/lock /var/lock /etc/iscsi/nodes /var/lib/iscsi
t iscsid sh -c 'iscsid && sleep 1' || exit 1

# --- a local VG on a loop device with a swap LV in use -----------------------
truncate -s 192M /tmp/pv0.img
LOOP=$(losetup -f)
losetup "$LOOP" /tmp/pv0.img
t vg_local sh -c "pvcreate -y -q $LOOP && vgcreate -q vg0 $LOOP &&
    lvcreate -y -q -W n -Z n -n swap -L 64M vg0" || exit 1
t swapon sh -c 'mkswap /dev/vg0/swap >/dev/null && swapon /dev/vg0/swap'

# memstress in a memory cgroup far below its size: its pages live in swap.
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
mkdir -p /sys/fs/cgroup/stress
# memory.high keeps it at 16M by reclaim (its pages go to swap) without the
# OOM killer; memory.max leaves headroom for the moments when swap I/O
# stalls (pvmove and lvconvert suspend the LV briefly).
echo 16M >/sys/fs/cgroup/stress/memory.high
echo 40M >/sys/fs/cgroup/stress/memory.max
start_stress() { # start_stress TAG MiB
    rm -f /tmp/stress-$1.ready /tmp/stress-$1.stop
    sh -c "echo \$\$ >/sys/fs/cgroup/stress/cgroup.procs; exec $B/tests/vm/memstress \
        --size $2 --ready-file /tmp/stress-$1.ready --stop-file /tmp/stress-$1.stop \
        --status-file /tmp/stress-$1.status" >/tmp/stress-$1.log 2>&1 &
    echo $! >/tmp/stress-$1.pid
    vm_wait 120 test -e /tmp/stress-$1.ready
}
stop_stress() { # stop_stress TAG: final verification, exit status of memstress
    touch /tmp/stress-$1.stop
    wait "$(cat /tmp/stress-$1.pid)"
    _r=$?
    tail -3 /tmp/stress-$1.log
    echo "memory.events: $(tr '\n' ' ' </sys/fs/cgroup/stress/memory.events)"
    return $_r
}
# memstress itself catches a flipped byte (the check below can fail).
t memstress_catches sh -c "! $B/tests/vm/memstress --size 4 --passes 3 --corrupt-page 5 --quiet"
t stress_start start_stress a 48
swap_in_use() { cat /proc/swaps; [ "$(awk '/vg0/ {print $4}' /proc/swaps)" -gt 16384 ]; }
t swap_in_use swap_in_use

# --- part 1: the drivers on a hand-made tgtd LUN --------------------------------
IQN=iqn.2026-12.org.vmio:hand.lease0
truncate -s 80M /dev/shm/hand.img
tgtd --control-port 5001 --iscsi portal=127.0.0.1:3270 >/tmp/tgtd-hand.log 2>&1
sleep 1
tgt() { tgtadm -C 5001 --lld iscsi "$@"; }
t hand_target sh -c "tgtadm -C 5001 --lld iscsi --op new --mode target --tid 1 -T $IQN &&
    tgtadm -C 5001 --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /dev/shm/hand.img &&
    tgtadm -C 5001 --lld iscsi --op bind --mode target --tid 1 -I ALL"
t hand_login sh -c "iscsiadm -m discovery -t st -p 127.0.0.1:3270 >/dev/null &&
    iscsiadm -m node -T $IQN -p 127.0.0.1:3270 --login >/dev/null"
HSD=
for i in 1 2 3 4 5 6 7 8 9 10; do
    HSD=$(iscsiadm -m session -P3 2>/dev/null | awk '/Attached scsi disk/ {print $4; exit}')
    [ -n "$HSD" ] && [ -b "/dev/$HSD" ] && break
    sleep 1
done
echo "hand-made LUN: /dev/$HSD"
# The unit test against the real sysfs and lvm (disk found by IQN + LUN).
t unit_real env VMIO_TEST_ISCSI_IQN=$IQN VMIO_TEST_ISCSI_LUN=1 VMIO_TEST_ISCSI_DISK=/dev/$HSD \
    VMIO_TEST_LVM_VG=vg0 CK_RUN_CASE=sysfs $B/tests/unit/test-memlend-lvm
t hand_pvmove sh -c "pvcreate -y -q /dev/$HSD && vgextend -q vg0 /dev/$HSD &&
    pvmove -i 0 -n swap $LOOP /dev/$HSD && lvs -a -o lv_name,devices vg0 &&
    pvmove -i 0 -n swap /dev/$HSD $LOOP"
t hand_cleanup sh -c "vgreduce -q vg0 /dev/$HSD && pvremove -q -y /dev/$HSD &&
    iscsiadm -m node -T $IQN --logout >/dev/null && iscsiadm -m node -T $IQN -o delete"
tgtadm -C 5001 --op delete --mode system --force >/dev/null 2>&1 || kill "$(pidof tgtd)" 2>/dev/null
t stress_a_ok stop_stress a
cat /tmp/stress-a.status

# --- part 2: the whole cycle --------------------------------------------------
if ! vmio-memlend manager --help >/dev/null 2>&1 || ! vmio-memlend lender --help >/dev/null 2>&1; then
    vm_skip memlend_cycle "vmio-memlend manager/lender not built"
    exit 0
fi

SECRET=/tmp/ml-secret
printf 'memlend-guest-secret-0123456789abcdef' >$SECRET
chmod 600 $SECRET
M=127.0.0.1:7700
vmio-memlend manager -f -l $M -d /tmp/ml.db -s $SECRET --lease-seconds 6 \
    --port-file /tmp/mgr.port >/tmp/mgr.log 2>&1 &
t manager_up vm_wait 20 test -s /tmp/mgr.port || exit 1

# A lender: its own tgtd; memory state from files so that the test decides
# when it is under pressure (psi avg10 above --psi-limit makes it reclaim).
calm() { printf 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n' >/tmp/$1.psi; }
pressure() { printf 'some avg10=60.00 avg60=30.00 avg300=10.00 total=99999999\nfull avg10=40.00 avg60=20.00 avg300=5.00 total=9999999\n' >/tmp/$1.psi; }
start_lender() { # start_lender NAME PORT CONTROL_PORT
    tgtd --control-port $3 --iscsi portal=127.0.0.1:$2 >/tmp/tgtd-$1.log 2>&1
    printf 'MemTotal: 4194304 kB\nMemFree: 3145728 kB\nMemAvailable: 3145728 kB\n' >/tmp/$1.meminfo
    calm $1
    mkdir -p /tmp/$1
    vmio-memlend lender -m $M -s $SECRET -n $1 -p 127.0.0.1:$2 -b tgt --tgt-control-port $3 \
        --state-dir /tmp/$1 --reserve 64M --max-lend 100M --calm 1 --interval 200 \
        --lease-seconds 6 --reclaim-deadline 120 --meminfo /tmp/$1.meminfo --psi /tmp/$1.psi \
        >/tmp/lender-$1.log 2>&1 &
    echo $! >/tmp/lender-$1.pid
    vm_wait 30 sh -c "vmio-memlend status -m $M -s $SECRET --json | grep -q '\"$1\"'"
}
lender_free() { # lender_free NAME: bytes it offers and has not lent
    vmio-memlend status -m $M -s $SECRET --json | grep "\"name\": \"$1\"" |
        sed 's/.*"exportable": \([0-9]*\), "lent": \([0-9]*\).*/\1 \2/' |
        { read -r e l && echo $((e - l)); }
}
offers() { [ "$(lender_free $1)" -ge 83886080 ] 2>/dev/null; }
t lender_a start_lender lena 3261 5011 || { cat /tmp/lender-lena.log; exit 1; }

vmio-swap agent --manager $M --secret-file $SECRET --name vm >/tmp/agent.log 2>&1 &
AGENT=$!
t agent_up vm_wait 20 grep -q connected /tmp/agent.log
SW="--manager $M --secret-file $SECRET --name vm"
swap_devs() { lvs --noheadings -o devices vg0/swap | tr -d ' '; }
t stress_start_b start_stress b 48

cycle() { # cycle N: attach, check, revoke by pressure, wait for the detach
    vm_wait 60 offers lena || { echo "lena offers $(lender_free lena)"; return 1; }
    vmio-swap attach --vg vg0 --lv swap $SW --json >/tmp/attach$1.json || return 1
    cat /tmp/attach$1.json
    lease=$(sed -n 's/.*"leases": \[\([0-9]*\).*/\1/p' /tmp/attach$1.json)
    case $(swap_devs) in /dev/sd*) ;; *) echo "swap not on the LUN: $(swap_devs)"; return 1 ;; esac
    vmio-swap status --json >/tmp/status$1.json || return 1
    grep -q "\"lease\": $lease" /tmp/status$1.json || return 1
    grep -q '"state": "ATTACHED"' /tmp/status$1.json ||
        { vmio-swap status $SW --json | grep -q '"state": "ATTACHED"' || return 1; }
    swap_in_use || return 1
    pressure lena
    vm_wait 240 grep -q "detached lease=$lease " /tmp/agent.log || return 1
    calm lena
    case $(swap_devs) in $LOOP*) ;; *) echo "swap not back: $(swap_devs)"; return 1 ;; esac
    pvs -o pv_name,pv_tags | grep -q vmio_lease && return 1
    iscsiadm -m session 2>/dev/null | grep -q lena && return 1
    # the lender freed it: the lease row is gone
    vm_wait 30 sh -c "! vmio-memlend status -m $M -s $SECRET --json | grep -q '\"id\": $lease,'"
}
t cycle1 cycle 1
cat /tmp/agent.log
t cycle2 cycle 2
# The borrower gives a lease back on its own (vmio-swap detach --lease).
own_detach() {
    vm_wait 60 offers lena || return 1
    vmio-swap attach --vg vg0 --lv swap $SW --json >/tmp/attach3.json || return 1
    lease=$(sed -n 's/.*"leases": \[\([0-9]*\).*/\1/p' /tmp/attach3.json)
    vmio-swap detach --lease "$lease" $SW --json || return 1
    case $(swap_devs) in $LOOP*) ;; *) echo "swap not back: $(swap_devs)"; return 1 ;; esac
    vm_wait 30 sh -c "! vmio-memlend status -m $M -s $SECRET --json | grep -q '\"id\": $lease,'"
}
t own_detach own_detach
t stress_b_ok stop_stress b
cat /tmp/stress-b.status

# --- plain mode, two lenders at once: one LV on each ---------------------------
t lender_b start_lender lenb 3262 5012
t swap2 sh -c 'lvcreate -y -q -W n -Z n -n swap2 -L 32M vg0 && mkswap /dev/vg0/swap2 >/dev/null &&
    swapon /dev/vg0/swap2'
t stress_start_d start_stress d 48
lender_of() { # lender_of LV: the lender of the borrowed PV that holds it
    vmio-swap status --json | tr '{' '\n' | grep "\"lv\": \"$1\"" | grep '"lease": [1-9]' |
        sed -n 's/.*"lender": "\([^"]*\)".*/\1/p' | head -1
}
two_lenders() {
    vm_wait 60 offers lena && vm_wait 60 offers lenb || return 1
    vmio-swap attach --vg vg0 --lv swap $SW --json || return 1
    # lena has 100M - 66M left, less than swap2 needs: the manager picks lenb
    vmio-swap attach --vg vg0 --lv swap2 $SW --json || return 1
    vmio-swap status
    lvs -o lv_name,devices vg0
    a=$(lender_of swap) && b=$(lender_of swap2) || return 1
    echo "swap on $a, swap2 on $b"
    [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ] || return 1
    for lv in swap swap2; do
        case $(lvs --noheadings -o devices vg0/$lv | tr -d ' ') in /dev/sd*) ;; *) return 1 ;; esac
    done
    [ "$(iscsiadm -m session 2>/dev/null | wc -l)" = 2 ]
}
t plain_two_lenders two_lenders
two_back() {
    vmio-swap detach --all $SW --json || return 1
    for lv in swap swap2; do
        case $(lvs --noheadings -o devices vg0/$lv | tr -d ' ') in $LOOP*) ;; *) return 1 ;; esac
    done
    ! iscsiadm -m session >/dev/null 2>&1
}
t plain_two_detach two_back
t stress_d_ok stop_stress d
swapoff /dev/vg0/swap2 && lvremove -y -q vg0/swap2

# --- a failed attach is rolled back (error injected into the real LVM) --------
REAL_LVM=$(command -v lvm)
mkdir -p /tmp/inject
printf '#!/bin/sh\nif [ "$1" = pvmove ] && [ "$2" != --abort ]; then\n    echo "injected pvmove failure" >&2\n    exit 5\nfi\nexec %s "$@"\n' "$REAL_LVM" >/tmp/inject/lvm
chmod +x /tmp/inject/lvm
failed_attach() {
    vm_wait 60 offers lena && vm_wait 60 offers lenb || return 1
    npv=$(pvs --noheadings | wc -l)
    if PATH=/tmp/inject:$PATH vmio-swap attach --vg vg0 --lv swap $SW >/tmp/fail.out 2>&1; then
        echo "attach succeeded"; return 1
    fi
    cat /tmp/fail.out
    grep -q "injected pvmove failure" /tmp/fail.out || return 1
    [ "$(pvs --noheadings | wc -l)" = "$npv" ] || { pvs; return 1; }
    case $(swap_devs) in $LOOP*) ;; *) echo "swap moved: $(swap_devs)"; return 1 ;; esac
    iscsiadm -m session >/dev/null 2>&1 && { iscsiadm -m session; return 1; }
    # the lease went back: nothing is lent any more
    vm_wait 30 sh -c "[ \"\$(vmio-memlend status -m $M -s $SECRET --json | grep -c '\"lent\": [1-9]')\" = 0 ]"
}
t failed_attach_rolled_back failed_attach

# --- mirrored: two lenders, one killed while lent: no page lost ----------------
t stress_start_c start_stress c 48
mirror_attach() {
    vm_wait 60 offers lena && vm_wait 60 offers lenb || return 1
    vmio-swap attach --mirror --vg vg0 --lv swap $SW --json >/tmp/attachm.json || return 1
    cat /tmp/attachm.json
    lvs -a -o lv_name,segtype,devices vg0
    [ "$(lvs --noheadings -o segtype vg0/swap | tr -d ' ')" = raid1 ]
}
t mirror_attach mirror_attach
vmio-swap status $SW
kill_lender() { # kill_lender NAME CONTROL_PORT: the lender and its target die
    kill -9 "$(cat /tmp/lender-$1.pid)"
    for p in $(pidof tgtd); do
        tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | grep -q -- "--control-port $2" && kill -9 $p
    done
    true
}
t kill_lenb kill_lender lenb 5012
t mirror_leg_dropped vm_wait 240 grep -q "leg-dropped" /tmp/agent.log
lvs -a -o lv_name,segtype,devices vg0
cat /tmp/agent.log
t stress_c_ok stop_stress c
t mirror_detach vmio-swap detach --all $SW
t mirror_back sh -c '[ "$(lvs --noheadings -o segtype vg0/swap | tr -d " ")" = linear ] &&
    lvs --noheadings -o devices vg0/swap | grep -q loop'

# --- plain mode, lender killed while lent: a clear report ----------------------
plain_attach() { vm_wait 60 offers lena && vmio-swap attach --vg vg0 --lv swap $SW; }
t plain_attach plain_attach
t kill_lena kill_lender lena 5011
t plain_reported vm_wait 240 grep -q "DATA-LOST.*vg0/swap" /tmp/agent.log
grep DATA-LOST /tmp/agent.log
plain_status() { vmio-swap status; [ $? = 3 ]; }
t plain_status_at_risk plain_status
kill $AGENT 2>/dev/null
vm_export /tmp/agent.log memlend-agent.log

# Leave the guest as later scripts expect it: no daemons of this script, no
# iSCSI session, no swap on the (now broken) VG.
for p in $(pidof vmio-memlend vmio-swap tgtd memstress 2>/dev/null); do kill -9 $p 2>/dev/null; done
swapoff -a 2>/dev/null
iscsiadm -m node --logoutall=all >/dev/null 2>&1
vgchange -an vg0 >/dev/null 2>&1
losetup -d "$LOOP" 2>/dev/null
exit 0
