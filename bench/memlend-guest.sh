#!/bin/bash
# Guest side of bench/memlend.sh (runs in the tests/vm guest, started with
# run.sh --scratch-disk): swap on remote memory against swap on a local
# disk, the pvmove switch time of swap LVs in use, and the reclaim latency.
#   1. VG vgml on the scratch virtio disk (the "local disk"), swap LV on it;
#      memlend-walker in a memory cgroup (memory.max = LIMIT_MIB) at each
#      data size, each pattern and block size.
#   2. Remote memory: a LUN on a tmpfs file exported by tgtd on 127.0.0.1,
#      logged in with iscsiadm, added to vgml; the swap LV is pvmoved onto
#      it and the walker runs again. Set up through the project's tools
#      (vmio-memlend manager + lender, vmio-swap attach) when they work,
#      else by hand; memlend.txt says which (remote_setup=...).
#   3. For each SWITCH_MIB: a swap LV of that size, ~3/4 filled by a running
#      program that keeps reading and writing it (memlend-walker --hold,
#      every page verified at the end), pvmove to the LUN and back, timed;
#      the way back is a reclaim: from the lender's decision to the tmpfs
#      memory being free again.
# Results: memlend.txt (key=value) and the walker's JSON files, exported.
. "${VM_LIB:-/vm/guest/lib.sh}"
# Settings written by bench/memlend.sh (a config script run before this one).
[ -f /run/memlend.conf ] && . /run/memlend.conf
LIMIT_MIB=${LIMIT_MIB:-64}          # memory.max of the walker's cgroup
SIZES=${SIZES:-"32 128 256"}          # walker data sizes, MiB
BS=${BS:-1K,64K,1M}                   # block sizes
SECS=${SECS:-3}                       # seconds per pattern and block size
SWITCH_MIB=${SWITCH_MIB:-"256 1024"}  # swap LVs for the switch time
FILL_LIMIT_MIB=${FILL_LIMIT_MIB:-64}  # memory.max of the swap filler
USE_TOOLS=${USE_TOOLS:-auto}          # auto|yes|no: the project's tools
W=/vm/build/bench/memlend-walker
R=/tmp/ml
OUT=$R/memlend.txt
CG=/sys/fs/cgroup/memlend
mkdir -p $R
: >$OUT
kv() { echo "$1=$2" | tee -a $OUT; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
max_size=0
for s in $SIZES; do [ "$s" -gt "$max_size" ] && max_size=$s; done
max_switch=0
for s in $SWITCH_MIB; do [ "$s" -gt "$max_switch" ] && max_switch=$s; done
SWAP_MIB=$max_size
LUN_MIB=$(( (SWAP_MIB > max_switch ? SWAP_MIB : max_switch) + 64 ))
kv limit_mib $LIMIT_MIB
kv sizes_mib "$(echo $SIZES | tr ' ' ,)"
kv bs "$BS"
kv secs $SECS
kv swap_mib $SWAP_MIB
kv lun_mib $LUN_MIB
kv guest_mem_kib "$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
kv guest_cpus "$(nproc)"
kv guest_kernel "$(uname -r)"

# --- setup -------------------------------------------------------------------
t modules modprobe -a virtio_pci virtio_blk dm_mod dm_mirror iscsi_tcp sd_mod || exit 1
# zswap would keep swapped pages in RAM: both devices must really be used.
[ -w /sys/module/zswap/parameters/enabled ] && echo N >/sys/module/zswap/parameters/enabled
kv zswap "$(cat /sys/module/zswap/parameters/enabled 2>/dev/null || echo absent)"
VD=
find_scratch() {
    for d in /sys/block/vd*; do
        [ "$(cat "$d/serial" 2>/dev/null)" = vmio-scratch ] && VD=${d##*/} && return 0
    done
    return 1
}
t scratch_disk vm_wait 10 find_scratch || exit 1
kv local_disk "/dev/$VD $(($(cat /sys/block/$VD/size) / 2048)) MiB, scheduler $(cat /sys/block/$VD/queue/scheduler)"
t walker_catches_errors sh -c "! $W --size 8M --bs 4K --pattern seqread --seconds 0.2 --inject-error >/dev/null 2>&1"
t cgroup sh -c "echo +memory >/sys/fs/cgroup/cgroup.subtree_control && mkdir -p $CG && echo ${LIMIT_MIB}M >$CG/memory.max" || exit 1
t vg sh -c "pvcreate -y /dev/$VD && vgcreate vgml /dev/$VD" || exit 1
t swap_lv sh -c "lvcreate -y -W n -Z n -n swap -L ${SWAP_MIB}M vgml /dev/$VD && mkswap /dev/vgml/swap >/dev/null && swapon /dev/vgml/swap" || exit 1

# walker SIZE_MIB WHERE: one walker process (fill, every pattern and block
# size, final check) in the cgroup.
walker() {
    echo 3 >/proc/sys/vm/drop_caches
    echo "${LIMIT_MIB}M" >$CG/memory.max
    local f=$R/walk-$2-$1.json t0
    t0=$(now)
    sh -c 'echo $$ >'"$CG"'/cgroup.procs && exec "$@"' sh \
        $W --size "${1}M" --bs "$BS" --seconds "$SECS" --label "$2-$1" >$f
    local rc=$?
    kv "walk_$2_$1_s" "$(since "$t0")"
    kv "walk_$2_$1_swap_used_after_kib" "$(awk 'NR > 1 {s += $4} END {print s + 0}' /proc/swaps)"
    vm_export $f
    return $rc
}
matrix() { # WHERE
    local s
    for s in $SIZES; do
        t "walk_$1_$s" walker "$s" "$1"
    done
}

# --- 1. swap on the local disk ------------------------------------------------
T_LOCAL=$(now)
matrix local
kv matrix_local_s "$(since "$T_LOCAL")"

# --- 2. remote memory -----------------------------------------------------------
# Two ways to set the lender and the borrower up: the project's tools
# (vmio-memlend manager + lender, vmio-swap attach/agent) or by hand (tgtd +
# tgtadm, iscsiadm, pvcreate/vgextend/pvmove), the latter when the tools
# are missing or fail; memlend.txt says which was used (remote_setup).
PORT=3260
CTL=7
SD=
REMOTE_SETUP=by-hand
# The disk of a session, found through sysfs by target IQN and LUN 1.
find_sd() {
    local s d
    for s in /sys/class/iscsi_session/session*; do
        [ "$(cat "$s/targetname" 2>/dev/null)" = "$IQN" ] || continue
        for d in "$s"/device/target*/*:*:*:1/block/*; do
            [ -e "$d" ] && SD=${d##*/} && [ -b /dev/$SD ] && return 0
        done
    done
    return 1
}
tgtd_up() {
    pidof tgtd >/dev/null && return 0
    tgtd -f --control-port $CTL --iscsi portal=127.0.0.1:$PORT >$R/tgtd.log 2>&1 &
    vm_wait 10 tgtadm -C $CTL --lld iscsi --op show --mode target >/dev/null 2>&1
}
# A timed pvmove of LV from PV to PV; the seconds go to memlend.txt.
move() { # KEY LV FROM TO
    local t0
    t0=$(now)
    pvmove -i 10 -n "$2" "/dev/$3" "/dev/$4" >>$R/pvmove.log 2>&1 || return 1
    kv "$1" "$(since "$t0")"
}

# -- by hand: a tmpfs file exported by tgtd, as the paper did it
IQN=iqn.2026-12.org.vmio:bench.lease1
LMNT=/run/lender
lender_up_by_hand() { # LUN_MIB
    mkdir -p $LMNT
    mount -t tmpfs -o size=$(($1 + 16))M tmpfs $LMNT || return 1
    truncate -s "${1}M" $LMNT/lun.img || return 1
    tgtd_up || return 1
    tgtadm -C $CTL --lld iscsi --op new --mode target --tid 100 -T $IQN &&
        tgtadm -C $CTL --lld iscsi --op new --mode logicalunit --tid 100 --lun 1 -b $LMNT/lun.img &&
        tgtadm -C $CTL --lld iscsi --op bind --mode target --tid 100 -I ALL
}
lender_down_by_hand() {
    tgtadm -C $CTL --lld iscsi --op delete --mode logicalunit --tid 100 --lun 1 &&
        tgtadm -C $CTL --lld iscsi --op delete --mode target --tid 100 &&
        rm -f $LMNT/lun.img && umount $LMNT
}
attach_by_hand() {
    pidof iscsid >/dev/null || { iscsid && sleep 1; }
    iscsiadm -m discovery -t sendtargets -p 127.0.0.1:$PORT >/dev/null &&
        iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT --login >/dev/null &&
        vm_wait 20 find_sd && pvcreate -y /dev/$SD >/dev/null && vgextend vgml /dev/$SD >/dev/null
}
detach_by_hand() {
    vgreduce vgml /dev/$SD >/dev/null && pvremove /dev/$SD >/dev/null &&
        iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT --logout >/dev/null &&
        iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT -o delete >/dev/null
}
provision_by_hand() { # LUN_MIB
    local t0
    t0=$(now)
    lender_up_by_hand "$1" && attach_by_hand || return 1
    kv attach_s "$(since "$t0")"
}

# -- the project's tools: manager, lender and borrower agent in this guest.
# The lender shares the guest with the borrower, whose swapping on purpose
# would read as the lender's own memory pressure: it gets a pressure file
# that stays calm (--psi), and reclaims when told (SIGUSR1, "reclaim all").
MGR=127.0.0.1:7700
SECRET=$R/secret
SWAP_ARGS="--manager $MGR --secret-file $SECRET --name borrower"
start_lender() {
    vmio-memlend lender --manager $MGR --secret-file $SECRET --name lender1 \
        --portal 127.0.0.1:$PORT --backend tgt --tgt-control-port $CTL \
        --state-dir /run/lender-tools --reserve 512M --max-lend ${LUN_MIB}M --psi $R/psi-calm \
        --interval 200 --calm 1 --lease-seconds 6 >>$R/lender.log 2>&1 &
    LENDER=$!
    vm_wait 30 grep -q registered $R/lender.log
}
tools_up() {
    vmio-swap attach --help >/dev/null 2>&1 && vmio-memlend lender --help >/dev/null 2>&1 ||
        { echo "the project's tools are missing or do not answer --help"; return 1; }
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >$SECRET)
    printf 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n' >$R/psi-calm
    vmio-memlend manager --foreground --listen $MGR --db $R/manager.db --secret-file $SECRET \
        --lease-seconds 6 >$R/manager.log 2>&1 &
    MANAGER=$!
    vm_wait 10 grep -q listening $R/manager.log || return 1
    pidof iscsid >/dev/null || { iscsid && sleep 1; }
    tgtd_up || return 1
    start_lender || return 1
    vmio-swap agent $SWAP_ARGS >$R/agent.log 2>&1 &
    AGENT=$!
    sleep 1
    kill -0 $AGENT
}
# vmio-swap attach, retried while the lender's offer grows.
attach_tools() { # LV SIZE_MIB
    local i=0
    while [ $i -lt 15 ]; do
        vmio-swap attach --vg vgml --lv "$1" --size "${2}M" $SWAP_ARGS >>$R/attach.log 2>&1 && break
        i=$((i + 1))
        sleep 2
    done
    [ $i -lt 15 ] || return 1
    tail -n 1 $R/attach.log
    # The lease's disk: an iSCSI disk of lender1 that is a PV of vgml.
    local s d
    SD=
    for s in /sys/class/iscsi_session/session*; do
        case $(cat "$s/targetname" 2>/dev/null) in *:lender1.lease*) ;; *) continue ;; esac
        for d in "$s"/device/target*/*:*:*:*/block/*; do
            [ -e "$d" ] || continue
            [ "$(pvs --noheadings -o vg_name "/dev/${d##*/}" 2>/dev/null | tr -d ' ')" = vgml ] &&
                SD=${d##*/}
        done
    done
    pvs
    [ -n "$SD" ]
}
tools_down() {
    kill $AGENT $LENDER 2>/dev/null
    wait $AGENT $LENDER 2>/dev/null
    kill $MANAGER 2>/dev/null
    wait $MANAGER 2>/dev/null
}

# swap LV onto remote memory: attach (tools) or provision + pvmove (by hand)
case $USE_TOOLS in
no) why="USE_TOOLS=no" ;;
*)
    why=
    if t tools_up tools_up; then
        T0=$(now)
        if t attach_tools_swap attach_tools swap $((SWAP_MIB + 128)); then
            kv switch_idle_${SWAP_MIB}_to_remote_s "$(since "$T0")"
            REMOTE_SETUP=tools
        else
            why="vmio-swap attach failed: $(tail -n 2 $R/attach.log | tr '\n' ' ')"
        fi
    else
        why="the tools did not start: $(tail -n 3 $R/manager.log $R/lender.log 2>/dev/null | tr '\n' ' ')"
    fi
    if [ $REMOTE_SETUP != tools ]; then
        vmio-swap detach --all --vg vgml $SWAP_ARGS >/dev/null 2>&1
        tools_down
        [ "$USE_TOOLS" = yes ] && { kv remote_setup "tools failed: $why"; vm_export $OUT; exit 1; }
    fi
    ;;
esac
if [ $REMOTE_SETUP = by-hand ]; then
    kv remote_setup_why "$why"
    t remote_provision provision_by_hand $LUN_MIB || exit 1
fi
kv remote_setup $REMOTE_SETUP
kv remote_disk "/dev/$SD $(($(cat /sys/block/$SD/size) / 2048)) MiB, scheduler $(cat /sys/block/$SD/queue/scheduler)"
# The devices themselves, below swap: O_DIRECT, one request at a time,
# 64 MiB in 1 MiB requests and 4 MiB in 4 KiB requests, on a scratch LV.
rawdev() { # WHERE PV
    local t0 lv=/dev/vgml/raw_$1
    lvcreate -y -W n -Z n -n raw_$1 -L 64M vgml /dev/$2 >/dev/null || return 1
    for bs in 1M:64 4K:1024; do
        t0=$(now)
        dd if=/dev/zero of=$lv bs=${bs%:*} count=${bs#*:} oflag=direct 2>/dev/null || return 1
        kv "raw_$1_write_${bs%:*}_s" "$(since "$t0")"
        t0=$(now)
        dd if=$lv of=/dev/null bs=${bs%:*} count=${bs#*:} iflag=direct 2>/dev/null || return 1
        kv "raw_$1_read_${bs%:*}_s" "$(since "$t0")"
    done
    lvremove -y vgml/raw_$1 >/dev/null
}
t raw_local rawdev local $VD
t raw_remote rawdev remote $SD
if [ $REMOTE_SETUP = by-hand ]; then
    t switch_idle_to_remote move switch_idle_${SWAP_MIB}_to_remote_s swap $VD $SD || exit 1
fi
lvs -a -o lv_name,lv_size,devices vgml
T_REMOTE=$(now)
matrix remote
kv matrix_remote_s "$(since "$T_REMOTE")"
if [ $REMOTE_SETUP = tools ]; then
    # detach: pvmove back, vgreduce, pvremove, logout, release; the
    # lender then removes the LUN.
    T0=$(now)
    t switch_idle_to_local vmio-swap detach --all --vg vgml $SWAP_ARGS
    kv switch_idle_${SWAP_MIB}_to_local_s "$(since "$T0")"
else
    t switch_idle_to_local move switch_idle_${SWAP_MIB}_to_local_s swap $SD $VD
fi
swapoff /dev/vgml/swap
lvremove -y vgml/swap >/dev/null

# --- 3. switch time and reclaim with a swap LV in use ----------------------------
hold_start() { # SIZE_MIB
    local data=$((FILL_LIMIT_MIB + $1 * 3 / 4))
    echo "${FILL_LIMIT_MIB}M" >$CG/memory.max
    rm -f $R/stop-$1 $R/hold-$1.err
    sh -c 'echo $$ >'"$CG"'/cgroup.procs && exec "$@"' sh \
        $W --hold --size "${data}M" --stop-file $R/stop-$1 --rate 100 --label "hold-$1" \
        >$R/hold-$1.json 2>$R/hold-$1.err &
    HOLD=$!
    vm_wait 600 grep -q holding $R/hold-$1.err
}
hold_stop() { # SIZE_MIB
    touch $R/stop-$1
    wait $HOLD
    local rc=$?
    cat $R/hold-$1.json $R/hold-$1.err
    vm_export $R/hold-$1.json
    return $rc
}
mem_avail() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
# Reclaim: the lender decides at t0; the borrower moves its data back,
# leaves the VG, logs out; the lender removes the LUN and frees the memory.
reclaim_by_hand() { # SIZE_MIB
    local t0 avail0
    avail0=$(mem_avail)
    t0=$(now)
    move "switch_inuse_$1_to_local_s" "sw$1" $SD $VD || return 1
    detach_by_hand || return 1
    kv "reclaim_$1_detached_s" "$(since "$t0")"
    lender_down_by_hand || return 1
    kv "reclaim_$1_s" "$(since "$t0")"
    kv "reclaim_$1_mem_freed_kib" $(($(mem_avail) - avail0))
}
# With the tools: SIGUSR1 is the lender's decision; the manager revokes,
# the agent moves the LV back and releases, the lender removes the LUN and
# reports "removed ... N bytes freed, X s after the reclaim decision".
reclaim_tools() { # SIZE_MIB
    local t0 avail0 n
    n=$(grep -c ' removed ' $R/lender.log)
    avail0=$(mem_avail)
    t0=$(now)
    kill -USR1 $LENDER || return 1
    vm_wait 900 sh -c "[ \$(grep -c ' removed ' $R/lender.log) -gt $n ]" || return 1
    kv "reclaim_$1_s" "$(since "$t0")"
    kv "reclaim_$1_mem_freed_kib" $(($(mem_avail) - avail0))
    kv "reclaim_$1_lender_says" "$(grep ' removed ' $R/lender.log | tail -n 1)"
    # SIGUSR1 also stops lending: a fresh lender for the next round.
    kill $LENDER
    wait $LENDER
    start_lender
}
first=1
for S in $SWITCH_MIB; do
    if [ $first = 0 ] && [ $REMOTE_SETUP = by-hand ]; then
        t "provision_$S" provision_by_hand $((S + 64)) || break
    fi
    first=0
    t "swap_lv_$S" sh -c "lvcreate -y -W n -Z n -n sw$S -L ${S}M vgml /dev/$VD >/dev/null &&
        mkswap /dev/vgml/sw$S >/dev/null && swapon /dev/vgml/sw$S" || break
    T0=$(now)
    t "hold_fill_$S" hold_start $S || break
    kv "hold_fill_${S}_s" "$(since "$T0")"
    kv "switch_inuse_${S}_swap_used_kib" "$(awk 'NR > 1 {s += $4} END {print s + 0}' /proc/swaps)"
    cat /proc/swaps
    if [ $REMOTE_SETUP = tools ]; then
        T0=$(now)
        t "switch_inuse_${S}_to_remote" attach_tools "sw$S" $((S + 64)) &&
            kv "switch_inuse_${S}_to_remote_s" "$(since "$T0")"
        t "reclaim_$S" reclaim_tools $S
    else
        t "switch_inuse_${S}_to_remote" move "switch_inuse_${S}_to_remote_s" "sw$S" $VD $SD
        t "reclaim_$S" reclaim_by_hand $S
    fi
    t "hold_verified_$S" hold_stop $S
    swapoff /dev/vgml/sw$S
    lvremove -y vgml/sw$S >/dev/null
done
[ $REMOTE_SETUP = tools ] && tools_down
for f in manager lender agent attach; do
    [ -s $R/$f.log ] && vm_export $R/$f.log memlend-$f.log
done
cat $OUT
vm_export $OUT
