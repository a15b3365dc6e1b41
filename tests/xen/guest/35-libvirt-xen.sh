#!/bin/sh
# VM groups through libvirt's libxl driver (the "libvirt" backend on
# xen:///system) with a domain libvirt itself created, read back with xl,
# independently of libvirt and libvmio:
#   - libvirtd starts in dom0 (its libxl driver only); the PVH domain
#     "lvdom" (2 vCPUs) is defined from domain XML and started, and the
#     test waits until its init runs;
#   - vmio-group caps: what the driver can do (weight, cap, pins, metadata)
#     and cannot (emulator threads, NUMA binding, cpupools);
#   - apply --pin strict --housekeeping 0 --weight 600 --cap 80: each vCPU
#     on a CPU of its own, not CPU 0 (xl vcpu-list), credit weight 600 and
#     cap 80 (xl sched-credit), the group in the domain's metadata, the
#     pins in the persistent definition too (virsh dumpxml --inactive); the
#     driver's missing emulator pinning is a warning, not a failure; a
#     second apply changes nothing;
#   - remove: pins, weight (back to the 256 it had) and cap undone,
#     metadata gone; destroy forgets the group.
. "${XEN_LIB:-/xen/guest/lib.sh}"

U=xen:///system
ST=/tmp/vmio-groups-libvirt
rm -rf "$ST"
vg() { vmio-group --backend libvirt --connect $U --state-dir "$ST" "$@"; }
vcpu_hard() { xl vcpu-list lvdom | awk -v v="$1" '$1 == "lvdom" && $3 == v { print $7 }'; }
credit() { xl sched-credit -d lvdom | awk '$1 == "lvdom" { print $3 " " $4 }'; }
is_eq() { [ "$2" = "$3" ] && return 0; echo "$1: got '$2', want '$3'"; return 1; }

if ! command -v libvirtd >/dev/null || ! command -v vmio-group >/dev/null; then
    xen_skip libvirt-xen "libvirtd or vmio-group is not in dom0"
    exit 0
fi
mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
libvirtd -p /run/libvirtd.pid >/tmp/libvirtd.log 2>&1 &
t lv/libvirtd-up xen_wait 60 test -S /run/libvirt/libvirt-sock || { cat /tmp/libvirtd.log; exit 1; }
t lv/connect virsh -c $U version

cat >/tmp/lvdom.xml <<XML
<domain type='xen'>
  <name>lvdom</name>
  <memory unit='MiB'>128</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='xenpvh'>xenpvh</type>
    <kernel>/xen/domu/vmlinux</kernel>
    <initrd>/xen/domu/domu.img</initrd>
    <cmdline>console=hvc0 rdinit=/init loglevel=3 panic=-1 mitigations=off cryptomgr.notests</cmdline>
  </os>
  <clock offset='utc'><timer name='tsc' present='yes' mode='native'/></clock>
  <on_crash>preserve</on_crash>
  <devices><console type='pty'><target type='xen' port='0'/></console></devices>
</domain>
XML
t lv/define virsh -c $U define /tmp/lvdom.xml || { cat /tmp/libvirtd.log; exit 1; }
# Started, and up: its init wrote @@DOMU-UP to the console. Under TCG a
# domU now and then dies in early boot (a triple fault); such a start is
# made again, up to three times.
lv_start() {
    for _try in 1 2 3; do
        rm -f "$(domu_console lvdom)"
        virsh -c $U start lvdom || return 1
        xen_wait 180 sh -c "grep -q @@DOMU-UP '$(domu_console lvdom)' ||
            ! virsh -c $U domstate lvdom | grep -q running"
        if grep -q @@DOMU-UP "$(domu_console lvdom)" 2>/dev/null; then
            return 0
        fi
        echo "lvdom did not come up (try $_try): $(virsh -c $U domstate lvdom)"
        virsh -c $U destroy lvdom >/dev/null 2>&1
    done
    return 1
}
t lv/start lv_start || { cat /tmp/libvirtd.log; exit 1; }
xl vcpu-list lvdom
t lv/weight-before is_eq credit "$(credit)" "256 0"

vg caps >/tmp/lv-caps.out 2>&1
cat /tmp/lv-caps.out
t lv/caps-weight grep -qE '^ +weight +yes' /tmp/lv-caps.out
t lv/caps-no-emulator-pin grep -qE '^ +emulator-pin +no' /tmp/lv-caps.out
t lv/caps-no-numa grep -qE '^ +numa-memory +no' /tmp/lv-caps.out
t lv/group-create vg create lv
t lv/group-add vg add lv lvdom

vg apply lv --pin strict --housekeeping 0 --weight 600 --cap 80 >/tmp/lv-apply.out 2>&1
t lv/apply test $? = 0
cat /tmp/lv-apply.out
H0=$(vcpu_hard 0)
H1=$(vcpu_hard 1)
echo "lvdom vCPU 0 on $H0, vCPU 1 on $H1"
t lv/pins-single sh -c "echo '$H0 $H1' | grep -qE '^[1-9] [1-9]$'"
t lv/pins-distinct test "$H0" != "$H1"
t lv/weight-cap is_eq credit "$(credit)" "600 80"
t lv/metadata sh -c "virsh -c $U metadata lvdom https://libvmio.org/xmlns/group/1 | grep -q 'name=.lv.'"
t lv/emulator-pin-warned grep -q 'warning: .*cannot pin emulator threads' /tmp/lv-apply.out
virsh -c $U dumpxml --inactive lvdom >/tmp/lv-inactive.xml
grep -n 'vcpu' /tmp/lv-inactive.xml
t lv/pins-persistent sh -c "grep -q \"vcpupin vcpu='0' cpuset='$H0'\" /tmp/lv-inactive.xml &&
    grep -q \"vcpupin vcpu='1' cpuset='$H1'\" /tmp/lv-inactive.xml"
vg apply lv >/tmp/lv-apply2.out 2>&1
cat /tmp/lv-apply2.out
t lv/second-apply-no-change sh -c "! grep -qE '^lvdom: ' /tmp/lv-apply2.out"

t lv/remove vg remove lv lvdom
t lv/unpinned is_eq hard "$(vcpu_hard 0) $(vcpu_hard 1)" "all all"
virsh -c $U dumpxml --inactive lvdom >/tmp/lv-inactive.xml
grep -n 'vcpu' /tmp/lv-inactive.xml
t lv/unpinned-persistent sh -c "! grep -q \"vcpupin vcpu='[01]' cpuset='[1-9]'\" /tmp/lv-inactive.xml"
t lv/weight-back is_eq credit "$(credit)" "256 0"
t lv/metadata-gone sh -c "! virsh -c $U metadata lvdom https://libvmio.org/xmlns/group/1 >/dev/null 2>&1"
t lv/group-destroy vg destroy lv
virsh -c $U destroy lvdom >/dev/null 2>&1
virsh -c $U undefine lvdom >/dev/null 2>&1
kill "$(cat /run/libvirtd.pid 2>/dev/null)" 2>/dev/null
