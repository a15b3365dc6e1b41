#!/bin/bash
# bench/rdma.sh: libvmio's RDMA data path against perftest on the same
# soft-RoCE device, in one run inside the tests/vm guest (QEMU TCG: the
# absolute figures are those of an emulated CPU; the ratios are what
# counts). Prints a table with the issue's targets and keeps the raw files
# in bench/out/rdma-DATE/.
#   BUILD_DIR (default build). Each measurement runs 8 s.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
OUT=bench/out/rdma-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
[ -x "$BUILD_DIR/cli/vmio-bench" ] || { meson setup "$BUILD_DIR" >/dev/null && ninja -C "$BUILD_DIR"; }
tests/vm/run.sh --build-dir "$BUILD_DIR" --mem 2048 --timeout 900 \
    --script bench/rdma-guest.sh --out-dir "$OUT" >"$OUT/run.out" 2>&1 || {
    tail -n 40 "$OUT/run.out"
    echo "bench/rdma.sh: the guest run failed (output: $OUT/run.out)" >&2
    exit 1
}
python3 - "$OUT/rdma-bench.txt" <<'PY'
import sys
v = {}
for line in open(sys.argv[1]):
    k, _, x = line.strip().partition("=")
    try:
        v[k] = float(x)
    except ValueError:
        pass
def g(k):
    return v.get(k, float("nan"))
gib = 1 << 30
print("RDMA data path on soft-RoCE (rxe0 in a QEMU TCG guest), 1 MiB requests, QD16")
print(f"{'':34}{'perftest':>12}{'vmio':>12}{'ratio':>8}  target")
# A client read is an RDMA WRITE by the server, a client write an RDMA READ.
rows = [("client read  (vs ib_write_bw)", "ib_write_bw_MBps", "vmio_rdma_read_MBps", ">= 0.90"),
        ("client write (vs ib_read_bw)", "ib_read_bw_MBps", "vmio_rdma_write_MBps", ">= 0.90")]
for name, a, b, tgt in rows:
    print(f"{name:34}{g(a):10.1f}MB{g(b):10.1f}MB{g(b)/g(a):8.2f}  {tgt}")
def med3(k):
    xs = sorted(g(f"{k}_{i}") for i in (1, 2, 3))
    return xs[1], xs
lat_a, ra = med3("ib_send_lat_us")
lat_b, rb = med3("vmio_send_lat_us")
print(f"{'8-byte one-way latency, median':34}{lat_a:12.2f}{lat_b:12.2f}{lat_b/lat_a:8.2f}  <= 1.10")
print(f"{'  of three rounds (us)':34}{'/'.join(f'{x:.1f}' for x in ra):>12}{'/'.join(f'{x:.1f}' for x in rb):>12}")
print()
print("client CPU seconds per GiB moved (vmio-bench storage, 1 MiB, QD16)")
for rw in ("write", "read"):
    r = g(f"vmio_rdma_{rw}_cpu_s") / (g(f"vmio_rdma_{rw}_bytes") / gib)
    t = g(f"vmio_tcp_{rw}_cpu_s") / (g(f"vmio_tcp_{rw}_bytes") / gib)
    print(f"  {rw:5}: RDMA {r:.3f} s/GiB, TCP {t:.3f} s/GiB, RDMA/TCP {r/t:.2f}")
b = g("vmio_rdma_bounce_read_cpu_s") / (g("vmio_rdma_bounce_read_bytes") / gib)
print(f"  read through bounce buffers (unregistered memory): {b:.3f} s/GiB")
print()
print("inline threshold: MB/s at QD16, every request inline / every one by one-sided RDMA")
for rw in ("read", "write"):
    for bs in ("4k", "16k", "64k", "256k"):
        i, r = g(f"thr_{rw}_{bs}_inline_MBps"), g(f"thr_{rw}_{bs}_rdma_MBps")
        print(f"  {rw:5} {bs:>4}: inline {i:8.1f}  rdma {r:8.1f}  rdma/inline {r/i:5.2f}")
print(f"  throughput over TCP in the same guest: write {g('vmio_tcp_write_MBps'):.1f} MB/s,"
      f" read {g('vmio_tcp_read_MBps'):.1f} MB/s")
PY
echo "raw results: $OUT"
