#!/bin/bash
# vmio-migrate end to end over TCP loopback: the live demo (a region
# written by threads during the migration, tracked with userfaultfd-wp)
# arrives with the receiver's digest equal to the sender's; the JSON
# output is well formed; failures exit 1 with a clear message; bench runs
# every mode over small snapshots.
. "$(dirname "$0")/functions.sh"
: "${VMIO_MIGRATE:?VMIO_MIGRATE must point at the built vmio-migrate}"
require_cmd python3

# recv prints its port first (port 0 = ephemeral).
start_recv() {
    "$VMIO_MIGRATE" recv --listen tcp://127.0.0.1:0 --json --digest-out "$TMP/digest" \
        "$@" >"$TMP/recv.out" 2>"$TMP/recv.log" &
    RECV_PID=$!
    track_pid "$RECV_PID"
    wait_until 20 grep -q listening "$TMP/recv.out" || fail "recv did not listen"
    RECV_PORT=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["port"])' "$TMP/recv.out")
}

# 1. live demo, JSON
start_recv
"$VMIO_MIGRATE" send --to "tcp://127.0.0.1:$RECV_PORT" --demo-size 64M --writers 2 \
    --write-rate 5000 --json >"$TMP/send.out" 2>"$TMP/send.log" || {
    cat "$TMP/send.log" "$TMP/recv.log" >&2; fail "send failed"; }
wait "$RECV_PID" || { cat "$TMP/recv.log" >&2; fail "recv failed"; }
untrack_pid "$RECV_PID"
python3 - "$TMP/send.out" "$TMP/recv.out" "$TMP/digest" <<'PY' || fail "outputs disagree"
import json, sys
send = [json.loads(l) for l in open(sys.argv[1])]
recv = [json.loads(l) for l in open(sys.argv[2])]
rounds = [e for e in send if e["event"] == "round"]
done = [e for e in send if e["event"] == "done"][0]
rdone = [e for e in recv if e["event"] == "done"][0]
digest = open(sys.argv[3]).read().strip()
assert len(rounds) == done["rounds"] >= 2, (len(rounds), done)
assert rounds[0]["pages"] == 16384, rounds[0]
assert sum(r["pages"] for r in rounds[1:]) > 0, "nothing resent although writers ran"
assert done["writes"] > 0
for r in rounds:
    assert sum(c["pages"] for c in r["codecs"].values()) == r["pages"], r
assert done["digest"] == rdone["digest"] == digest, (done["digest"], rdone["digest"], digest)
assert rdone["rounds"] == done["rounds"]
print("rounds", done["rounds"], "writes", done["writes"], "digest", digest)
PY
ok "live demo migrated, digests equal"

# 2. text output, a second run with a fixed policy and one thread
start_recv
"$VMIO_MIGRATE" send --to "127.0.0.1:$RECV_PORT" --demo-size 16M --threads 1 \
    --policy fixed --codecs zero,delta,dedup,zstd,skip --max-rounds 3 \
    >"$TMP/send2.out" 2>"$TMP/send2.log" || { cat "$TMP/send2.log" >&2; fail "send 2 failed"; }
wait "$RECV_PID" || fail "recv 2 failed"
untrack_pid "$RECV_PID"
grep -q "receiver confirmed the digest" "$TMP/send2.out" || fail "no confirmation in: $(cat "$TMP/send2.out")"
ok "fixed policy, one thread"

# 3. errors: nobody listening, bad arguments
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if "$VMIO_MIGRATE" send --to "tcp://127.0.0.1:$port" --demo-size 4M --timeout-ms 2000 \
        >/dev/null 2>"$TMP/err.log"; then
    fail "send to a closed port succeeded"
fi
grep -q "vmio-migrate: vmio_migrate_send: " "$TMP/err.log" || fail "unclear error: $(cat "$TMP/err.log")"
set +e
"$VMIO_MIGRATE" send --to "tcp://127.0.0.1:1" >/dev/null 2>"$TMP/err2.log"; rc=$?
"$VMIO_MIGRATE" send --to "ftp://x:1" --demo-size 4M >/dev/null 2>"$TMP/err3.log"; rc3=$?
"$VMIO_MIGRATE" bench --link 1parsec x >/dev/null 2>&1; rc4=$?
set -e
[ "$rc" -eq 2 ] || fail "missing --demo-size: exit $rc"
[ "$rc3" -eq 1 ] && grep -q "unknown scheme" "$TMP/err3.log" || fail "bad scheme: $rc3 $(cat "$TMP/err3.log")"
[ "$rc4" -eq 2 ] || fail "bad --link: exit $rc4"
ok "errors are clear"

# 4. bench over two small snapshots, every mode
python3 - "$TMP/s0" "$TMP/s1" <<'PY'
import os, random, sys
random.seed(1)
pages = []
for i in range(2048):
    k = i % 4
    if k == 0:
        pages.append(bytes(4096))
    elif k == 1:
        pages.append(bytes([i % 7]) * 4096)
    elif k == 2:
        pages.append(b"guest memory text " * 227 + b"xx")
    else:
        pages.append(os.urandom(4096))
open(sys.argv[1], "wb").write(b"".join(pages))
for i in random.sample(range(2048), 200):
    p = bytearray(pages[i]); p[random.randrange(4096)] ^= 0xff; pages[i] = bytes(p)
open(sys.argv[2], "wb").write(b"".join(pages))
PY
"$VMIO_MIGRATE" bench --link 10gbit --json "$TMP/s0" "$TMP/s1" >"$TMP/bench.out" 2>"$TMP/bench.log" \
    || { cat "$TMP/bench.log" >&2; fail "bench failed"; }
python3 - "$TMP/bench.out" <<'PY' || fail "bench output"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tot = {r["mode"]: r for r in rows if r["round"] == "total"}
assert set(tot) == {"raw", "zero", "delta", "dedup", "zstd", "lz4", "adaptive"}, tot.keys()
raw = tot["raw"]["wire_bytes"]
assert tot["raw"]["raw_bytes"] >= 8 << 20
for m in ("zero", "dedup", "zstd", "adaptive"):
    assert tot[m]["wire_bytes"] < raw, (m, tot[m]["wire_bytes"], raw)
r1 = {r["mode"]: r for r in rows if r["round"] == 1}
assert r1["delta"]["wire_bytes"] < r1["zero"]["wire_bytes"] / 4, (r1["delta"], r1["zero"])
print({m: round(raw / t["wire_bytes"], 2) for m, t in tot.items()})
PY
ok "bench: every mode, compressing modes smaller than raw"
