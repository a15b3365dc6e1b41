#!/bin/bash
# vmio-cp on the embedded default (local files, no server): sparse and
# dense images, copies into an existing larger image, and many copies with
# small requests, each of which must finish (a lost completion wake-up
# shows up here as a copy that never ends).
. "$(dirname "$0")/functions.sh"
require_cmd cmp

make_image "$TMP/sparse.raw" 64
"$VMIO_CP" -q "$TMP/sparse.raw" "$TMP/s1.raw"
cmp "$TMP/sparse.raw" "$TMP/s1.raw" || fail "sparse copy differs"
[ "$(allocated "$TMP/s1.raw")" -le $(( 8 * 1048576 )) ] || fail "sparse copy is not sparse"
"$VMIO_CP" -q "file://$TMP/s1.raw" "file://$TMP/s2.raw"
cmp "$TMP/sparse.raw" "$TMP/s2.raw" || fail "file:// copy differs"
ok "sparse image copied, holes kept"

# --offload: local to local through copy_file_range (one call per 64 MiB,
# not one request per MiB); --no-offload copies through buffers; both exact.
make_dense "$TMP/d48.raw" 48
"$VMIO_CP" -q --json --offload "$TMP/d48.raw" "$TMP/o1.raw" > "$TMP/o1.json"
cmp "$TMP/d48.raw" "$TMP/o1.raw" || fail "offloaded copy differs"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["requests"] <= 2 else 1)' \
    "$TMP/o1.json" || { cat "$TMP/o1.json"; fail "local copy was not offloaded"; }
"$VMIO_CP" -q --json --no-offload "$TMP/d48.raw" "$TMP/o2.raw" > "$TMP/o2.json"
cmp "$TMP/d48.raw" "$TMP/o2.raw" || fail "--no-offload copy differs"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["requests"] >= 48 else 1)' \
    "$TMP/o2.json" || { cat "$TMP/o2.json"; fail "--no-offload did not copy through buffers"; }
"$VMIO_CP" -q --offload "$TMP/sparse.raw" "$TMP/o3.raw"
cmp "$TMP/sparse.raw" "$TMP/o3.raw" || fail "offloaded sparse copy differs"
[ "$(allocated "$TMP/o3.raw")" -le $(( 8 * 1048576 )) ] || fail "offloaded copy is not sparse"
ok "copy_file_range offload and --no-offload both exact and sparse"

make_dense "$TMP/dense.raw" 48
make_dense "$TMP/old.raw" 96
"$VMIO_CP" -q "$TMP/dense.raw" "$TMP/old.raw"
cmp "$TMP/dense.raw" "$TMP/old.raw" || fail "copy over a larger existing image differs"
ok "copy over a larger existing image"

# 12 copies of 48 MiB with 4 KiB requests and 1 to 4 in flight: about
# 150000 completions, each one of which must wake the event loop.
for i in $(seq 1 12); do
    rm -f "$TMP/q.raw"
    "$VMIO_CP" -q --no-offload -Q $(( i % 4 + 1 )) -r 4k "$TMP/dense.raw" "$TMP/q.raw" \
        >"$TMP/cp.out" 2>&1 &
    CP=$!
    track_pid "$CP"
    wait_exit "$CP" 60
    [ "$WAIT_RC" -eq 0 ] || { cat "$TMP/cp.out"; fail "copy $i exited $WAIT_RC"; }
    cmp "$TMP/dense.raw" "$TMP/q.raw" || fail "copy $i differs"
done
ok "12 copies with 4 KiB requests completed"
