#!/bin/bash
# vmio-group end to end on libvirt's test:/// driver with the HPC paper's
# node (tests/unit/data/group/hpc-2s4c.xml: 2 sockets x 4 cores) and a
# private state directory: create, add, apply --dry-run (reports what
# apply then does, and changes nothing, the stored policy included),
# apply, show/list/caps in text and JSON (checked with python3's json),
# remove, destroy; the usage and failure exit codes with their messages;
# and the InfiniBand commands (hostdev list on a sysfs fixture and on
# libvirt's node devices of ib-node.xml, attach --dry-run, attach, detach,
# host-detach refused by the test driver).
. "$(dirname "$0")/functions.sh"
: "${VMIO_GROUP:?VMIO_GROUP must point at the built vmio-group}"
require_cmd python3 sha256sum

DATA=$(cd "$(dirname "$0")/../unit/data/group" && pwd)
HOST_XML=$DATA/hpc-2s4c.xml
[ -f "$HOST_XML" ] || fail "missing $HOST_XML"
STATE=$TMP/state
G=("$VMIO_GROUP" --connect "test://$HOST_XML" --state-dir "$STATE")

# The first two domains of the host XML.
mapfile -t VMS < <(python3 - "$HOST_XML" <<'PY'
import sys, xml.etree.ElementTree as ET
for d in ET.parse(sys.argv[1]).getroot().findall("domain")[:2]:
    print(d.findtext("name"))
PY
)
[ "${#VMS[@]}" -eq 2 ] || fail "want two domains in $HOST_XML, got: ${VMS[*]}"
VM1=${VMS[0]} VM2=${VMS[1]}

# json FILE PY: parse FILE (one JSON object) and run the python
# assertions in PY with it as `j`.
json() {
    python3 -m json.tool "$1" >/dev/null || { cat "$1" >&2; fail "$1 is not valid JSON"; }
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); $2" "$1" ||
        { cat "$1" >&2; fail "JSON check failed: $2"; }
}

state_sum() { find "$STATE" -type f -print0 | sort -z | xargs -0 -r sha256sum; }

# 1. capabilities, and an empty state
"${G[@]}" caps > "$TMP/caps.txt" || fail "caps"
grep -Eq '^  pin-strict +yes' "$TMP/caps.txt" || { cat "$TMP/caps.txt"; fail "caps: no pin-strict"; }
grep -Eq '^  coschedule +no +[^ ]' "$TMP/caps.txt" || fail "caps: coschedule must be 'no' with a note"
"${G[@]}" caps --json > "$TMP/caps.json" || fail "caps --json"
json "$TMP/caps.json" "c={x['name']:x for x in j['capabilities']}; assert len(c)==13, c; assert c['coschedule']['supported'] is False; assert all(x['note'] for x in c.values()); assert j['backend']=='libvirt'"
"${G[@]}" list --json > "$TMP/list0.json" || fail "list on an empty state"
json "$TMP/list0.json" "assert j['groups']==[]"
ok "caps and empty list"

# 2. create, add
expect 0 "created group hpc \(id [0-9]+\)" "${G[@]}" create hpc
expect 1 "^vmio-group: vmio_group_create: " "${G[@]}" create hpc
expect 0 "added $VM1 to hpc" "${G[@]}" add hpc "$VM1"
"${G[@]}" add hpc "$VM2" --json > "$TMP/add.json" || fail "add $VM2"
json "$TMP/add.json" "assert j['vms']==['$VM2'] and j['members']==2, j"
expect 1 "^vmio-group: vmio_group_add: .*no-such-vm" "${G[@]}" add hpc no-such-vm
"${G[@]}" show hpc --json > "$TMP/show1.json" || fail "show"
json "$TMP/show1.json" "g=j['groups'][0]; assert g['name']=='hpc' and g['members']==['$VM1','$VM2'], g; assert g['policy']['pin']=='auto'"

# 3. apply --dry-run: the changes apply would make, and nothing stored
before=$(state_sum)
"${G[@]}" apply hpc --pin strict --locality socket --dry-run --json > "$TMP/dry.json" ||
    fail "apply --dry-run"
[ "$(state_sum)" = "$before" ] || fail "apply --dry-run changed the state directory"
json "$TMP/dry.json" "assert j['dry_run'] is True and len(j['changes'])>0, j; assert j['policy']['pin']=='strict'"
"${G[@]}" show hpc --json > "$TMP/show2.json" || fail "show after dry run"
json "$TMP/show2.json" "p=j['groups'][0]['policy']; assert p['pin']=='auto' and p['locality']=='any', p"
ok "dry run changed nothing"

# 4. apply: the same changes, now made and the policy stored
"${G[@]}" apply hpc --pin strict --locality socket --json > "$TMP/apply.json" || fail "apply"
python3 - "$TMP/dry.json" "$TMP/apply.json" "$VM1" "$VM2" <<'PY' || fail "apply vs dry run"
import json, sys
dry, real = (json.load(open(f)) for f in sys.argv[1:3])
key = lambda c: (c["vm"] or "", c["what"], c["before"], c["after"])
assert sorted(map(key, dry["changes"])) == sorted(map(key, real["changes"])), (dry, real)
assert real["dry_run"] is False
pins = [c for c in real["changes"] if c["what"].startswith("vcpupin")]
assert pins, real["changes"]
cpus = [c["after"] for c in pins]
# strict: one CPU per vCPU, none shared
assert all(x.isdigit() for x in cpus), cpus
assert len(set(cpus)) == len(cpus), cpus
assert {c["vm"] for c in pins} == set(sys.argv[3:5])
print("apply:", len(real["changes"]), "changes, placement", real["cpus"])
PY
"${G[@]}" show hpc --json > "$TMP/show3.json" || fail "show after apply"
json "$TMP/show3.json" "p=j['groups'][0]['policy']; assert p['pin']=='strict' and p['locality']=='socket', p"
# text form of the report: "vm: what: before -> after"
"${G[@]}" apply hpc > "$TMP/apply.txt" || fail "apply (text)"
grep -Eq "^$VM1: vcpupin [0-9]+: .+ -> [0-9]+$" "$TMP/apply.txt" ||
    { cat "$TMP/apply.txt"; fail "no vcpupin line in the text report"; }
grep -Eq '^placement: group [0-9]' "$TMP/apply.txt" || fail "no placement line"
ok "apply made the dry run's changes"

# 5. list, show all
expect 0 "^hpc +id [0-9]+ +2 members" "${G[@]}" list
"${G[@]}" create second > /dev/null || fail "create second"
"${G[@]}" list --json > "$TMP/list.json" || fail "list --json"
json "$TMP/list.json" "n=sorted(g['name'] for g in j['groups']); assert n==['hpc','second'], n"
"${G[@]}" show --json > "$TMP/showall.json" || fail "show (all)"
json "$TMP/showall.json" "assert sorted(g['name'] for g in j['groups'])==['hpc','second']; assert 'pin-strict' in j['capabilities']"

# 6. errors: exit 2 for usage, 1 with the library's message otherwise
expect 1 "^vmio-group: vmio_group_open: " "${G[@]}" show no-such-group
expect 1 "^vmio-group: vmio_group_open: " "${G[@]}" apply no-such-group
expect 2 "bad --pin 'sideways'" "${G[@]}" apply hpc --pin sideways
expect 2 "bad --locality" "${G[@]}" apply hpc --locality planet
expect 2 "bad --cpus" "${G[@]}" apply hpc --cpus -3
expect 1 "^vmio-group: vmio_group_(set_policy|apply): .*housekeeping" \
    "${G[@]}" apply hpc --housekeeping 3-x
# strict 1:1 on 3 CPUs for 4 vCPUs: impossible, and the policy is kept as it was
expect 1 "^vmio-group: vmio_group_apply: .*strict" \
    "${G[@]}" apply hpc --pin strict --housekeeping 0-4 --dry-run
expect 1 "^vmio-group: vmio_group_apply: .*strict" "${G[@]}" apply hpc --housekeeping 0-4
expect 2 "unknown command 'frobnicate'" "${G[@]}" frobnicate
expect 2 "no command" "$VMIO_GROUP" --state-dir "$STATE"
expect 2 "usage: vmio-group create NAME" "${G[@]}" create
expect 2 "policy options go with 'apply'" "${G[@]}" create x --pin strict
expect 2 "bad --backend" "${G[@]}" --backend vmware list
expect 2 "unknown option" "${G[@]}" list --frobnicate
expect 0 "^usage: vmio-group" "$VMIO_GROUP" --help
"${G[@]}" show hpc --json > "$TMP/show4.json" || fail "show after errors"
json "$TMP/show4.json" "p=j['groups'][0]['policy']; assert p['pin']=='strict' and p['housekeeping'] is None, p"

# 7. remove, destroy
expect 0 "removed $VM2 from hpc" "${G[@]}" remove hpc "$VM2"
"${G[@]}" show hpc --json > "$TMP/show5.json" || fail "show after remove"
json "$TMP/show5.json" "assert j['groups'][0]['members']==['$VM1']"
expect 0 "destroyed group hpc" "${G[@]}" destroy hpc
expect 1 "^vmio-group: vmio_group_open: " "${G[@]}" destroy hpc
"${G[@]}" list --json > "$TMP/list2.json" || fail "list after destroy"
json "$TMP/list2.json" "assert [g['name'] for g in j['groups']]==['second']"
ok "remove and destroy"

# 8. InfiniBand passthrough
SYS=$TMP/sys
mkdir -p "$SYS/bus/pci/devices/0000:81:00.0/infiniband/mlx5_0" \
    "$SYS/bus/pci/devices/0000:81:00.1" "$SYS/bus/pci/devices/0000:00:03.0"
for a in class=0x020700 vendor=0x15b3 device=0x1017 numa_node=1 local_cpulist=4-7 \
    sriov_totalvfs=8 sriov_numvfs=1; do
    echo "${a#*=}" > "$SYS/bus/pci/devices/0000:81:00.0/${a%%=*}"
done
for a in class=0x020700 vendor=0x15b3 device=0x1018 numa_node=1 local_cpulist=4-7; do
    echo "${a#*=}" > "$SYS/bus/pci/devices/0000:81:00.1/${a%%=*}"
done
ln -s ../0000:81:00.0 "$SYS/bus/pci/devices/0000:81:00.1/physfn"
echo 0x020000 > "$SYS/bus/pci/devices/0000:00:03.0/class"
"$VMIO_GROUP" --backend xen hostdev list --sysfs "$SYS" --json > "$TMP/hd.json" 2>"$TMP/hd.err" ||
    fail "hostdev list --sysfs: $(cat "$TMP/hd.err")"
json "$TMP/hd.json" "d=j['devices']; assert [x['pci'] for x in d]==['0000:81:00.0','0000:81:00.1'], d; assert d[0]['name']=='mlx5_0' and d[0]['numa_node']==1 and d[0]['total_vfs']==8; assert d[1]['is_vf'] and d[1]['pf']=='0000:81:00.0'"
expect 0 "0000:81:00.0 +mlx5_0 +- +15b3:1017 +PF +1 +4-7 +1/8" \
    "$VMIO_GROUP" --backend xen hostdev list --sysfs "$SYS"
expect 0 "" "$VMIO_GROUP" --backend xen hostdev list   # this machine's real /sys

IB=("$VMIO_GROUP" --connect "test://$DATA/ib-node.xml" --state-dir "$STATE" --topology "$DATA/topo-2s4c-ib.xml")
mkdir -p "$TMP/nosys/bus/pci/devices"
"${IB[@]}" hostdev list --sysfs "$TMP/nosys" --json > "$TMP/hd2.json" || fail "hostdev list (libvirt)"
json "$TMP/hd2.json" "d=j['devices']; assert j['sources']=='sysfs+libvirt'; assert [x['pci'] for x in d]==['0000:81:00.0','0000:81:00.1','0000:81:00.2'], d; assert d[0]['local_cpus']=='4-7'"
expect 0 "<hostdev mode=\"subsystem\" type=\"pci\" managed=\"yes\">" \
    "${IB[@]}" hostdev attach rank0 0000:81:00.1 --dry-run
"${IB[@]}" hostdev attach rank0 0000:81:00.1 --dry-run --json > "$TMP/attdry.json" ||
    fail "hostdev attach --dry-run --json"
json "$TMP/attdry.json" "x=[c['after'] for c in j['changes'] if c['what']=='domain xml']; assert len(x)==1 and '<hostdev' in x[0] and 'nodeset=\"1\"' in x[0], j; assert j['dry_run'] is True"
expect 0 "blocks live migration" "${IB[@]}" hostdev attach rank0 0000:81:00.1
"${IB[@]}" hostdev attach rank0 0000:81:00.1 --json > "$TMP/att.json" || fail "hostdev attach --json"
json "$TMP/att.json" "c={x['what']:x for x in j['changes']}; assert c['hostdev']['after']=='0000:81:00.1'; assert c['vcpu cpuset']['after']=='4-7'; assert c['numatune']['after']=='1'; assert any('blocks live migration' in w for w in j['warnings'])"
# Each run opens a fresh test:/// host: the attach above is gone again.
expect 1 "^vmio-group: vmio_hostdev_detach: no PCI hostdev 0000:81:00.1" \
    "${IB[@]}" hostdev detach rank0 0000:81:00.1
expect 1 "^vmio-group: vmio_hostdev_attach: no domain 'nobody'" \
    "${IB[@]}" hostdev attach nobody 0000:81:00.1
expect 1 "^vmio-group: vmio_hostdev_host_detach: .*cannot detach host devices" \
    "${IB[@]}" hostdev host-detach 0000:81:00.1
expect 2 "unknown hostdev command" "${IB[@]}" hostdev frob
expect 2 "--sysfs goes with 'hostdev list'" "${IB[@]}" hostdev attach rank0 0000:81:00.1 --sysfs /
ok "hostdev commands"
