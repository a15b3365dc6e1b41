#!/usr/bin/env python3
"""bench/corpus-stats.py: page statistics of guest-memory snapshots.

    bench/corpus-stats.py [--json] [--page-size N] PATH...

PATH is a snapshot file (snap-K.raw), a workload directory of
scripts/migrate-corpus.sh (its snap-*.raw in order) or the corpus directory
(every workload in it). Per snapshot it prints the share of zero pages and
of duplicate pages (non-zero pages whose content already occurred earlier in
the same image, i.e. what a content dedup codec sends as a reference), as a
share of all pages and of the non-zero pages. Per consecutive pair of a
workload: the pages unchanged at the same address, and the mean size of the
changed pages under an XOR + run-length delta (alternating zero / literal
runs with ULEB128 lengths, an estimate of what an XBZRLE-style codec sends;
pages whose delta would exceed the page size count as a full page).
Duplicates are found by SHA-1 of the page content.
"""
import argparse
import hashlib
import json
import mmap
import os
import re
import sys

NONZERO_RUN = re.compile(rb"[^\x00]+")


def uleb_len(n):
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


def delta_size(old, new, ps):
    """Bytes of an XOR + zero/literal run-length encoding of new against old."""
    x = (int.from_bytes(old, "little") ^ int.from_bytes(new, "little")).to_bytes(ps, "little")
    size, pos = 0, 0
    for m in NONZERO_RUN.finditer(x):
        size += uleb_len(m.start() - pos) + uleb_len(m.end() - m.start()) + (m.end() - m.start())
        pos = m.end()
        if size >= ps:
            return ps
    return size


def image_stats(path, ps):
    zero = bytes(ps)
    seen = set()
    n = nz = dup = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return {"file": path, "pages": 0}
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            for off in range(0, size - size % ps, ps):
                page = m[off:off + ps]
                n += 1
                if page == zero:
                    continue
                nz += 1
                h = hashlib.sha1(page).digest()
                if h in seen:
                    dup += 1
                else:
                    seen.add(h)
    return {"file": path, "pages": n, "zero_pages": n - nz, "nonzero_pages": nz,
            "dup_pages": dup, "zero_frac": (n - nz) / n, "dup_frac": dup / n,
            "dup_frac_of_nonzero": dup / nz if nz else 0.0}


def pair_stats(a, b, ps):
    unchanged = changed = dsum = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        sa, sb = os.fstat(fa.fileno()).st_size, os.fstat(fb.fileno()).st_size
        if sa != sb:
            sys.exit("%s and %s differ in size" % (a, b))
        with mmap.mmap(fa.fileno(), 0, access=mmap.ACCESS_READ) as ma, \
                mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ) as mb:
            for off in range(0, sa - sa % ps, ps):
                pa, pb = ma[off:off + ps], mb[off:off + ps]
                if pa == pb:
                    unchanged += 1
                else:
                    changed += 1
                    dsum += delta_size(pa, pb, ps)
    n = unchanged + changed
    return {"from": a, "to": b, "pages": n, "unchanged_frac": unchanged / n,
            "changed_pages": changed, "delta_bytes_per_changed_page": dsum / changed if changed else 0.0}


def snap_key(p):
    m = re.search(r"snap-(\d+)\.raw$", p)
    return int(m.group(1)) if m else -1


def groups(paths):
    """[(workload, [snapshot files])] from the command line."""
    out = []
    for p in paths:
        if os.path.isfile(p):  # consecutive files of one directory: one sequence
            w = os.path.basename(os.path.dirname(os.path.abspath(p)))
            if out and out[-1][0] == w and os.path.isfile(out[-1][1][-1]):
                out[-1][1].append(p)
            else:
                out.append((w, [p]))
            continue
        if not os.path.isdir(p):
            sys.exit("no such file or directory: %s" % p)
        snaps = sorted((os.path.join(p, f) for f in os.listdir(p) if re.match(r"snap-\d+\.raw$", f)),
                       key=snap_key)
        if snaps:
            out.append((os.path.basename(os.path.abspath(p)), snaps))
        else:
            for d in sorted(os.listdir(p)):
                if os.path.isdir(os.path.join(p, d)):
                    out.extend(groups([os.path.join(p, d)]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--page-size", type=int, default=4096)
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    ps = a.page_size
    g = groups(a.paths)
    if not g:
        sys.exit("no snap-*.raw found")
    if not a.json:
        print("%-10s %-11s %8s %7s %9s %11s %10s %12s" % (
            "workload", "snapshot", "MiB", "zero", "dup/all", "dup/nonzero", "unchanged", "delta B/pg"))
    for w, snaps in g:
        prev = None
        for s in snaps:
            st = image_stats(s, ps)
            st["workload"] = w
            pr = pair_stats(prev, s, ps) if prev else None
            if pr:
                pr["workload"] = w
            prev = s
            if a.json:
                print(json.dumps(st))
                if pr:
                    print(json.dumps(pr))
                continue
            if not st["pages"]:
                print("%-10s %-11s empty" % (w, os.path.basename(s)))
                continue
            print("%-10s %-11s %8d %6.1f%% %8.1f%% %10.1f%% %10s %12s" % (
                w, os.path.basename(s), st["pages"] * ps >> 20, 100 * st["zero_frac"],
                100 * st["dup_frac"], 100 * st["dup_frac_of_nonzero"],
                "%.1f%%" % (100 * pr["unchanged_frac"]) if pr else "-",
                "%.0f" % pr["delta_bytes_per_changed_page"] if pr else "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
