#!/bin/bash
# vmio-bench against a vmio:// image served by vmiod and against the
# embedded default: bounded runs (--ops) whose JSON results must account
# for every request, and an image the benchmark creates itself.
. "$(dirname "$0")/functions.sh"
: "${VMIO_BENCH:?VMIO_BENCH must point at the built vmio-bench}"
require_cmd python3

make_secret "$TMP/secret"
mkdir "$TMP/export"
make_dense "$TMP/export/disk.raw" 16
start_vmiod srv --export "img=$TMP/export" --secret-file "$TMP/secret"
export VMIO_SECRET_FILE="$TMP/secret"
H="vmio://127.0.0.1:$VMIOD_PORT/img"

# check JSON-FILE BACKEND RW OPS BS
check() {
    python3 - "$@" <<'PY'
import json, sys
path, backend, rw, ops, bs = sys.argv[1:6]
with open(path) as f:
    j = json.load(f)
assert j["backend"] == backend, j
assert j["rw"] == rw, j
assert j["ops"] == int(ops), j
assert j["bytes"] == int(ops) * int(bs), j
assert j["seconds"] > 0 and j["iops"] > 0, j
lat = j["lat_us"]
assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"], lat
print("ok: %s %s: %d ops, %.1f MB/s, p99 %.0f us" % (backend, rw, j["ops"], j["mb_per_s"], lat["p99"]))
PY
}

"$VMIO_BENCH" storage --rw randread --bs 4k --qd 8 --ops 2000 --json "$H/disk.raw" > "$TMP/r.json"
check "$TMP/r.json" vmio randread 2000 4096
"$VMIO_BENCH" storage --rw randwrite --bs 64k --qd 4 --ops 500 --json "$H/disk.raw" > "$TMP/w.json"
check "$TMP/w.json" vmio randwrite 500 65536
[ "$(stat -c %s "$TMP/export/disk.raw")" -eq $(( 16 * 1048576 )) ] ||
    fail "a write benchmark changed the image size"

"$VMIO_BENCH" storage --rw write --bs 64k --qd 4 --ops 200 --size 8M --json "$H/new.raw" > "$TMP/n.json"
check "$TMP/n.json" vmio write 200 65536
[ "$(stat -c %s "$TMP/export/new.raw")" -eq $(( 8 * 1048576 )) ] ||
    fail "vmio-bench did not create new.raw with --size 8M"

"$VMIO_BENCH" storage --rw read --bs 1M --qd 2 --ops 64 --json "$TMP/export/disk.raw" > "$TMP/f.json"
check "$TMP/f.json" file read 64 1048576

expect 2 "invalid --rw 'sideways'" "$VMIO_BENCH" storage --rw sideways "$H/disk.raw"
stop_pid "$VMIOD_PID" || fail "vmiod exited with status $? on SIGTERM"
