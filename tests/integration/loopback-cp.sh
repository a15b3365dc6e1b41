#!/bin/bash
# vmiod on loopback and vmio-cp round trips: file -> vmio:// -> file with
# cmp, holes kept, --verify, --json (parsed by python3), the secret given
# by environment and by URI option, and the two API examples over vmio://.
. "$(dirname "$0")/functions.sh"
require_cmd python3 cmp

make_secret "$TMP/secret"
mkdir "$TMP/export"
start_vmiod srv --export "img=$TMP/export" --secret-file "$TMP/secret"
URI="vmio://127.0.0.1:$VMIOD_PORT/img"
export VMIO_SECRET_FILE="$TMP/secret"

make_image "$TMP/src.raw" 64
SIZE=$(stat -c %s "$TMP/src.raw")

# Upload, download, compare.
"$VMIO_CP" -q "$TMP/src.raw" "$URI/disk.raw"
cmp "$TMP/src.raw" "$TMP/export/disk.raw" || fail "uploaded image differs"
ok "upload: images identical"
"$VMIO_CP" -q "$URI/disk.raw" "$TMP/back.raw"
cmp "$TMP/src.raw" "$TMP/back.raw" || fail "downloaded image differs"
ok "download: images identical"

# Holes stay holes: 3 MiB of data in a 64 MiB image.
for f in "$TMP/export/disk.raw" "$TMP/back.raw"; do
    a=$(allocated "$f")
    [ "$(stat -c %s "$f")" -eq "$SIZE" ] || fail "$f has the wrong size"
    [ "$a" -le $(( 8 * 1048576 )) ] || fail "$f is not sparse: $a bytes allocated"
    ok "$(basename "$f"): sparse ($a of $SIZE bytes allocated)"
done

# Overwriting an existing destination (with stale data) gives the source.
make_dense "$TMP/stale.raw" 80
"$VMIO_CP" -q "$TMP/stale.raw" "$URI/disk2.raw"
"$VMIO_CP" -q "$TMP/src.raw" "$URI/disk2.raw"
cmp "$TMP/src.raw" "$TMP/export/disk2.raw" || fail "overwritten image differs"
ok "overwrite of a larger, dense destination"

# --verify compares SHA-256 digests of both sides.
expect 0 "verify: match" "$VMIO_CP" --no-progress --verify "$URI/disk.raw" "$TMP/v.raw"

# --json: one JSON object whose numbers agree with the files.
unset VMIO_SECRET_FILE
"$VMIO_CP" --json --verify "$TMP/src.raw" "$URI/j.raw?secret-file=$TMP/secret" > "$TMP/out.json"
python3 - "$TMP/out.json" "$SIZE" "$(sha256sum < "$TMP/src.raw" | cut -d' ' -f1)" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    j = json.load(f)
size, digest = int(sys.argv[2]), sys.argv[3]
assert j["status"] == 0, j
assert j["bytes_total"] == size, j
assert j["verify"] == "match", j
assert j["source_sha256"] == digest == j["destination_sha256"], j
assert j["bytes_copied"] + j["bytes_skipped"] + j["bytes_zeroed"] <= size, j
assert 0 < j["bytes_copied"] < size, j      # holes were not copied as data
print("ok: --json:", {k: j[k] for k in ("bytes_copied", "bytes_skipped", "verify")})
PY
cmp "$TMP/src.raw" "$TMP/export/j.raw" || fail "image copied with --json differs"

# The examples, through the sync and the async API.
export VMIO_SECRET_FILE="$TMP/secret"
if [ -n "${EXAMPLE_COPY_SYNC:-}" ]; then
    "$EXAMPLE_COPY_SYNC" "$URI/disk.raw" "$TMP/sync.raw" >/dev/null
    cmp "$TMP/src.raw" "$TMP/sync.raw" || fail "copy-sync from vmio:// differs"
    "$EXAMPLE_COPY_SYNC" "$TMP/src.raw" "$URI/sync.raw" >/dev/null
    cmp "$TMP/src.raw" "$TMP/export/sync.raw" || fail "copy-sync to vmio:// differs"
    ok "examples/copy-sync both ways"
fi
if [ -n "${EXAMPLE_AIO_POLL:-}" ]; then
    "$EXAMPLE_AIO_POLL" "$URI/disk.raw" "$TMP/aio.raw" >/dev/null
    cmp "$TMP/src.raw" "$TMP/aio.raw" || fail "aio-poll from vmio:// differs"
    "$EXAMPLE_AIO_POLL" "$TMP/src.raw" "$URI/aio.raw" >/dev/null
    cmp "$TMP/src.raw" "$TMP/export/aio.raw" || fail "aio-poll to vmio:// differs"
    ok "examples/aio-poll both ways"
fi

stop_pid "$VMIOD_PID" || fail "vmiod exited with status $? on SIGTERM"
ok "vmiod stopped cleanly"
