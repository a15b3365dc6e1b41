#!/bin/bash
# bench/memlend.sh: memory lending in the tests/vm guest (QEMU TCG). Swap on
# remote memory (a tmpfs-backed iSCSI LUN, swap LV moved onto it with
# pvmove) against swap on a local disk (a virtio disk with cache=none on
# the host's disk), measured with the array walker bench/memlend-walker in
# a memory cgroup; the pvmove switch time of swap LVs in use; the reclaim
# latency. Prints the remote/local ratios next to the paper's (3x
# sequential, 15-20x random) and keeps the raw files in
# bench/out/memlend-DATE/. Under TCG every instruction is emulated: the
# absolute figures are those of an emulated machine.
#
# Settings (environment):
#   BUILD_DIR       meson build dir (default build-bench; set up as a release
#                   build when missing)
#   LIMIT_MIB       memory.max of the walker's cgroup (default 64)
#   SIZES           walker data sizes in MiB (default "32 128 256": below the
#                   limit to 4x it)
#   BS              block sizes (default 1K,64K,1M)
#   SECS            seconds per pattern and block size (default 3)
#   SWITCH_MIB      swap LVs for the switch time (default "256 1024")
#   USE_TOOLS       auto|yes|no: set the remote side up with vmio-memlend and
#                   vmio-swap (auto: when they work; else by hand)
#   VM_MEM          guest memory in MB (default 3072)
#   VM_TIMEOUT      guest time limit in seconds (default 1800)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-bench}
LIMIT_MIB=${LIMIT_MIB:-64}
SIZES=${SIZES:-"32 128 256"}
BS=${BS:-1K,64K,1M}
SECS=${SECS:-3}
SWITCH_MIB=${SWITCH_MIB:-"256 1024"}
USE_TOOLS=${USE_TOOLS:-auto}
VM_MEM=${VM_MEM:-3072}
VM_TIMEOUT=${VM_TIMEOUT:-1800}
OUT=bench/out/memlend-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" --buildtype=release -Dman=disabled >/dev/null
fi
ninja -C "$BUILD_DIR" >/dev/null || { echo "bench/memlend.sh: ninja -C $BUILD_DIR failed" >&2; exit 1; }

# The settings reach the guest as a script that runs first.
max=0
for s in $SWITCH_MIB $SIZES; do [ "$s" -gt "$max" ] && max=$s; done
scratch=$((max * 2 + 512))M
cat >"$OUT/memlend-config.sh" <<EOF
#!/bin/sh
# Settings of bench/memlend.sh for bench/memlend-guest.sh.
cat >/run/memlend.conf <<'CONF'
LIMIT_MIB='$LIMIT_MIB'
SIZES='$SIZES'
BS='$BS'
SECS='$SECS'
SWITCH_MIB='$SWITCH_MIB'
USE_TOOLS='$USE_TOOLS'
CONF
EOF
{
    echo "start $(date -u +%FT%TZ) $(uptime)"
    echo "host: $(nproc) CPUs, $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MB RAM"
    echo "QEMU processes already running (other users) at start: $(pgrep -c qemu-system || true)"
} >"$OUT/host-load.txt"
cmd=(tests/vm/run.sh --build-dir "$BUILD_DIR" --no-rebuild --mem "$VM_MEM" --timeout "$VM_TIMEOUT"
    --scratch-disk "$scratch" --script "$OUT/memlend-config.sh" --script bench/memlend-guest.sh
    --out-dir "$OUT")
echo "bench/memlend.sh: ${cmd[*]}"
echo "bench/memlend.sh: the guest runs for about 15-20 minutes; console in $OUT/run.out"
rc=0
"${cmd[@]}" >"$OUT/run.out" 2>&1 || rc=$?
echo "end   $(date -u +%FT%TZ) $(uptime)" >>"$OUT/host-load.txt"
tail -n 4 "$OUT/run.out"
[ -f "$OUT/memlend.txt" ] || { echo "bench/memlend.sh: no results (see $OUT/run.out)" >&2; exit 1; }

python3 - "$OUT" <<'PY'
import json, math, os, sys
out = sys.argv[1]
kv = {}
for line in open(os.path.join(out, "memlend.txt")):
    k, _, v = line.rstrip("\n").partition("=")
    kv[k] = v
def walks(where, size):
    p = os.path.join(out, f"walk-{where}-{size}.json")
    if not os.path.exists(p):
        return None
    return json.load(open(p))
limit = int(kv["limit_mib"])
sizes = [int(s) for s in kv["sizes_mib"].split(",")]
print(f"Swap on remote memory (iSCSI LUN on tmpfs, tgtd, {kv.get('remote_setup')}) vs swap on the local disk")
print(f"walker in a memory cgroup of {limit} MiB, {kv['secs']} s per walk; MB/s and remote/local")
print(f"{'size':>9} {'pattern':>9} {'bs':>6} {'local':>9} {'remote':>9} {'ratio':>7}  errors")
ratios = {"seq": [], "rand": []}
bad = 0
for size in sizes:
    lw, rw = walks("local", size), walks("remote", size)
    if not lw or not rw:
        print(f"{size:6} MiB  (missing results)")
        continue
    bad += lw["errors"] + rw["errors"]
    for a, b in zip(lw["runs"], rw["runs"]):
        la, rb = a["walk"]["mb_per_s"], b["walk"]["mb_per_s"]
        r = rb / la if la > 0 else float("nan")
        bs = a["bs"] // 1024
        bs = f"{bs}K" if bs < 1024 else f"{bs // 1024}M"
        swapped = size > limit
        if swapped:
            ratios["seq" if a["pattern"].startswith("seq") else "rand"].append(r)
        print(f"{size:5} MiB {a['pattern']:>9} {bs:>6} {la:9.1f} {rb:9.1f} {r:7.2f}"
              f"  {a['walk']['errors']}/{b['walk']['errors']}{'' if swapped else '  (fits in RAM)'}")
    print(f"{size:5} MiB {'fill':>9} {'':>6} {lw['fill']['mb_per_s']:9.1f} {rw['fill']['mb_per_s']:9.1f}"
          f" {rw['fill']['mb_per_s'] / lw['fill']['mb_per_s']:7.2f}")
def gmean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")
print()
print("remote/local over the sizes that swap (geometric mean of the walks above)")
print(f"  sequential: {gmean(ratios['seq']):6.2f}x   paper: 3x")
print(f"  random:     {gmean(ratios['rand']):6.2f}x   paper: 15-20x")
print(f"  wrong words read back: {bad}")
print()
print("the devices below swap (dd with O_DIRECT, one request at a time), MB/s")
for bs, mib in (("1M", 64), ("4K", 4)):
    for rw in ("write", "read"):
        l, r = (float(kv.get(f"raw_{w}_{rw}_{bs}_s", "nan")) for w in ("local", "remote"))
        print(f"  {rw:5} {bs}: local {mib * 1.048576 / l:8.1f}  remote {mib * 1.048576 / r:8.1f}"
              f"  ratio {l / r:5.2f}")
print()
print("switch time (pvmove of a swap LV) and reclaim latency, seconds")
if kv.get("remote_setup") == "tools":
    print("  (vmio-swap attach/detach: the times include the lease request, the LUN being made,")
    print("   the login, pvcreate/vgextend and, for detach, the teardown)")
else:
    print(f"  (set up by hand: {kv.get('remote_setup_why', '')})")
sw = kv.get("swap_mib")
if f"switch_idle_{sw}_to_remote_s" in kv:
    print(f"  {sw} MiB swap LV, idle:   to remote {kv[f'switch_idle_{sw}_to_remote_s']}, "
          f"back {kv.get(f'switch_idle_{sw}_to_local_s', '-')}")
tools = kv.get("remote_setup") == "tools"
for k in sorted(kv, key=lambda k: (len(k), k)):
    if k.startswith("switch_inuse_") and k.endswith("_to_remote_s"):
        s = k.split("_")[2]
        h = {}
        try:
            h = json.load(open(os.path.join(out, f"hold-{s}.json")))
        except (OSError, ValueError):
            pass
        used = int(kv.get(f"switch_inuse_{s}_swap_used_kib", 0)) // 1024
        print(f"  {s} MiB swap LV, {used} MiB in use: to remote {kv[k]}, back "
              f"{'in the reclaim' if tools else kv.get(f'switch_inuse_{s}_to_local_s', '-')}; reclaim (decision to memory free) "
              f"{kv.get(f'reclaim_{s}_s', '-')}, {int(kv.get(f'reclaim_{s}_mem_freed_kib', 0)) // 1024} MiB freed")
        if h:
            hd = h.get("hold", {})
            print(f"      program in use: {hd.get('ops')} verified ops, longest {hd.get('max_op_ms')} ms, "
                  f"{h.get('errors')} wrong words")
if not tools:
    print(f"  attach (LUN made, login, pvcreate, vgextend): {kv.get('attach_s', '-')} s")
PY
echo
cat "$OUT/host-load.txt"
echo "raw results: $OUT"
exit $rc
