#!/bin/bash
# vmio-bench pingpong over TCP on loopback: a server on an ephemeral port,
# a client run over 1..1M whose JSON must account for every size with sane
# latencies and verified data, the --max-mem guard, the default iteration
# schedule, usage errors, and setup messages that are malformed in every
# way the server checks: each must get a clean refusal and leave the server
# serving the next client.
. "$(dirname "$0")/functions.sh"
: "${VMIO_BENCH:?VMIO_BENCH must point at the built vmio-bench}"
require_cmd python3

# start_pp NAME [server args...]: sets PP_PID and PP_PORT.
start_pp() {
    local name=$1
    shift
    rm -f "$TMP/$name.port"
    "$VMIO_BENCH" pingpong --server --listen 127.0.0.1:0 --port-file "$TMP/$name.port" "$@" \
        >"$TMP/$name.log" 2>&1 &
    PP_PID=$!
    track_pid "$PP_PID"
    wait_until 20 test -s "$TMP/$name.port" || fail "pingpong server $name did not start"
    PP_PORT=$(cat "$TMP/$name.port")
    case $PP_PORT in
    ''|*[!0-9]*) fail "bad port file: '$PP_PORT'" ;;
    esac
}

# check_json FILE MIN MAX ITERS|default: one object per size MIN..MAX
# (powers of two, in order), measured with positive, ordered latencies and
# verified data.
check_json() {
    python3 - "$@" <<'PY'
import json, sys
path, lo, hi, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
objs = [json.loads(l) for l in open(path) if l.strip()]
sizes = [o["size"] for o in objs]
want = []
s = lo
while s <= hi:
    want.append(s)
    s *= 2
assert sizes == want, (sizes, want)
for o in objs:
    assert o["mode"] == "pingpong" and o["test"] == "send" and o["transport"] == "tcp", o
    assert "skipped" not in o, o
    assert o["integrity"] == "ok", o
    assert o["latency"] == "one-way" and o["qd"] == 1, o
    if iters == "default":
        n = max(4, min(10000, (1 << 30) // o["size"]))
        assert o["iters"] == n and o["warmup"] == min(100, n // 10), o
    else:
        assert o["iters"] == int(iters), o
    assert o["ops"] == o["iters"], o
    l = o["lat_us"]
    assert 0 < l["min"] <= l["median"] <= l["p90"] <= l["p99"] <= l["p99_9"] <= l["max"], o
    assert l["min"] <= l["mean"] <= l["max"], o
    assert o["mb_per_s"] > 0 and o["seconds"] > 0 and o["client_cpu_s"] >= 0, o
    # MB/s is size / mean one-way time
    assert abs(o["mb_per_s"] - o["size"] / l["mean"]) <= 0.01 * o["mb_per_s"] + 0.01, o
print("ok: %d sizes; %d B one-way median %.1f us; %d B %.0f MB/s" % (
    len(objs), objs[0]["size"], objs[0]["lat_us"]["median"], objs[-1]["size"],
    objs[-1]["mb_per_s"]))
PY
}

start_pp srv
SRV_PID=$PP_PID
SRV_PORT=$PP_PORT

# The full small-to-1M sweep, as JSON.
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --transport tcp --mode send \
    --sizes 1..1M --iters 200 --json > "$TMP/sweep.json"
check_json "$TMP/sweep.json" 1 1048576 200

# The default schedule (fewer iterations for large sizes), text output.
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 256k..512k --json > "$TMP/sched.json"
check_json "$TMP/sched.json" 262144 524288 default
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 1..4 --iters 10 > "$TMP/text.out"
grep -q "one way (round trip / 2)" "$TMP/text.out" || fail "no latency legend in the text output"
[ "$(grep -c ' ok$' "$TMP/text.out")" -eq 3 ] || { cat "$TMP/text.out"; fail "text output lacks 3 checked sizes"; }

# --max-mem on the client: 64k and 128k fit in 256k of buffers, 256k not.
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 64k..256k --iters 5 \
    --max-mem 256k --json > "$TMP/mm.json" 2> "$TMP/mm.err"
python3 - "$TMP/mm.json" <<'PY'
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1])]
assert [o["size"] for o in objs] == [65536, 131072, 262144], objs
assert all(o["integrity"] == "ok" for o in objs[:2]), objs
assert objs[2]["skipped"] is True and "--max-mem" in objs[2]["reason"], objs[2]
print("ok: client --max-mem skips 256k:", objs[2]["reason"])
PY
grep -q "size 262144 skipped" "$TMP/mm.err" || fail "the skip was not reported on stderr"

# --max-mem on the server: it skips what does not fit and says why.
start_pp small --max-mem 128k
SMALL_PID=$PP_PID
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$PP_PORT" --sizes 32k..128k --iters 5 --json \
    > "$TMP/smm.json" 2>/dev/null
python3 - "$TMP/smm.json" <<'PY'
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1])]
assert [o.get("skipped", False) for o in objs] == [False, False, True], objs
assert "server" in objs[2]["reason"], objs[2]
print("ok: server --max-mem skips 128k:", objs[2]["reason"])
PY
stop_pid "$SMALL_PID" || fail "server exited with status $? on SIGTERM"

# Usage errors (exit 2) and failures (exit 1).
expect 2 "needs --transport rdma" "$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --mode write
expect 2 "invalid --sizes '3..8'" "$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 3..8
expect 2 "invalid --sizes '1..2G'" "$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 1..2G
expect 2 "--qd is for --mode write and read" \
    "$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --qd 4
expect 2 "--server needs --listen" "$VMIO_BENCH" pingpong --server
expect 2 "--busy-poll is for --transport rdma" \
    "$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --busy-poll 10
expect 2 "unknown mode 'pong'" "$VMIO_BENCH" pong
# A port nobody listens on: take one from the kernel and close it again.
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect 1 "cannot connect" "$VMIO_BENCH" pingpong --connect "127.0.0.1:$DEAD" --sizes 1 --iters 1

# Malformed setup messages: each is refused with a reason, the server lives.
python3 - "$SRV_PORT" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
MAGIC = 0x564d5050

def setup(magic=MAGIC, version=1, mode=1, lo=1, hi=1024, iters=10, warmup=0xffffffff,
          qd=1, flags=0, tail=b"\0" * 20):
    return struct.pack(">IHHQQQIII", magic, version, mode, lo, hi, iters, warmup, qd, flags) + tail

def talk(data, shut=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        got += b
    s.close()
    return got

def refused(name, data, want):
    r = talk(data)
    assert len(r) == 128, (name, r)
    magic, version, status = struct.unpack(">IH2xI", r[:12])
    msg = r[16:].split(b"\0")[0].decode()
    assert magic == MAGIC and version == 1 and status != 0, (name, r)
    assert want in msg, (name, msg)
    print("ok: %s refused (errno %d): %s" % (name, status, msg))

assert len(setup()) == 64
refused("HTTP request", b"GET / HTTP/1.0\r\nHost: x\r\n\r\n".ljust(64, b"x"), "not a pingpong setup")
refused("bad magic", setup(magic=0xdeadbeef), "not a pingpong setup")
refused("version 9", setup(version=9), "unsupported protocol version 9")
refused("mode 7", setup(mode=7), "unknown mode 7")
refused("mode 0", setup(mode=0), "unknown mode 0")
refused("size 3", setup(lo=3, hi=8), "bad size range")
refused("size 0", setup(lo=0, hi=8), "bad size range")
refused("2G", setup(lo=1, hi=2 << 30), "bad size range")
refused("min > max", setup(lo=1024, hi=8), "bad size range")
refused("iters", setup(iters=10**12), "bad iteration count")
refused("warmup", setup(warmup=10**9), "bad warmup count")
refused("qd 2 send", setup(qd=2), "bad qd")
refused("qd 0", setup(qd=0), "bad qd")
refused("write over TCP", setup(mode=2), "needs an RDMA connection")
refused("read over TCP", setup(mode=3), "needs an RDMA connection")
refused("flags", setup(flags=1), "unknown flags")
refused("reserved", setup(tail=b"\0" * 19 + b"\1"), "reserved byte 63")

# Truncated setup then end of stream: no reply, connection closed.
assert talk(setup()[:10], shut=True) == b"", "reply to a truncated setup"
print("ok: truncated setup closed without reply")

# A valid setup, then a size outside the announced range: the size reply
# says fail, then the server hangs up.
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(setup(lo=1, hi=4, iters=2, warmup=0))
r = b""
while len(r) < 128:
    b = s.recv(128 - len(r))
    assert b, "no setup reply"
    r += b
assert struct.unpack(">I", r[8:12])[0] == 0, r
s.sendall(struct.pack(">IIQQQ", 1, 0, 64, 2, 0))
r = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    r += b
typ, arg = struct.unpack(">II", r[:8])
assert typ == 2 and arg == 3, r   # SIZE_REPLY, fail
print("ok: out-of-range size refused after the setup")
s.close()
PY

kill -0 "$SRV_PID" 2>/dev/null || fail "the server died on malformed setups"
grep -q "refused the setup: not a pingpong setup message" "$TMP/srv.log" ||
    fail "the server did not log the refusal"
grep -q "protocol error: size outside the announced range" "$TMP/srv.log" ||
    fail "the server did not log the bad size"
# And it still serves.
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 1..64k --iters 50 --json > "$TMP/after.json"
check_json "$TMP/after.json" 1 65536 50

# A killed client mid-run does not take the server down.
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 1..64k --iters 1M \
    > /dev/null 2>&1 &
CL=$!
track_pid "$CL"
sleep 0.5
kill -9 "$CL"
{ wait "$CL"; } 2>/dev/null || true
untrack_pid "$CL"
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$SRV_PORT" --sizes 1k --iters 20 --json > "$TMP/late.json"
check_json "$TMP/late.json" 1024 1024 20

grep -Eq "client 127\.0\.0\.1:[0-9]+: (receiving|sending) [0-9]+ bytes: (the peer closed the connection|Connection reset by peer)" \
    "$TMP/srv.log" || fail "the server did not log the vanished client"

# Data integrity, server side: a peer that sends wrong bytes in a check
# iteration gets a failed STATUS, and the server logs it.
python3 - "$SRV_PORT" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
def rx(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        assert c, "connection closed"
        b += c
    return b
s.sendall(struct.pack(">IHHQQQIII", 0x564d5050, 1, 1, 64, 64, 2, 0, 1, 0) + b"\0" * 20)
assert struct.unpack(">I", rx(128)[8:12])[0] == 0
s.sendall(struct.pack(">IIQQQ", 1, 0, 64, 2, 0))                 # SIZE 64, 2 iters
typ, arg = struct.unpack(">II", rx(32)[:8])
assert (typ, arg) == (2, 0), (typ, arg)
for k in range(2):
    assert struct.unpack(">I", rx(32)[:4])[0] == 4               # READY
    s.sendall(b"\x5a" * 64)                                        # not the pattern
    rx(64)
    typ, bad = struct.unpack(">II", rx(32)[:8])
    assert typ == 5 and bad == 1, (typ, bad)                      # STATUS: bad
s.sendall(struct.pack(">IIQQQ", 3, 0, 0, 0, 0))                   # END
s.close()
print("ok: the server reports wrong data in check iterations")
PY
wait_until 10 grep -q "size 64: received wrong data in iteration 0 (first bad byte at offset 0)" \
    "$TMP/srv.log" || fail "the server did not log the wrong data"

stop_pid "$SRV_PID" || fail "server exited with status $? on SIGTERM"

# Data integrity, client side: a fake server that answers with wrong bytes.
python3 - "$TMP/fake.port" > "$TMP/fake.log" 2>&1 <<'PY' &
import os, socket, struct, sys
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d\n" % ls.getsockname()[1])
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s, _ = ls.accept()
def rx(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
rx(64)
s.sendall(struct.pack(">IHHI", 0x564d5050, 1, 0, 0).ljust(128, b"\0"))
typ, arg, size, iters, warmup = struct.unpack(">IIQQQ", rx(32))
s.sendall(struct.pack(">IIQQQ", 2, 0, 0, 2 * size, 0))
for k in range(warmup + iters):
    check = k == warmup or k == warmup + iters - 1
    if check:
        s.sendall(struct.pack(">IIQQQ", 4, 0, k, 0, 0))
    rx(size)
    s.sendall(b"\xa5" * size)
    if check:
        s.sendall(struct.pack(">IIQQQ", 5, 0, 0, 0, 0))
rx(32)
PY
FAKE=$!
track_pid "$FAKE"
wait_until 20 test -s "$TMP/fake.port" || fail "the fake server did not start"
rc=0
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$(cat "$TMP/fake.port")" --sizes 4k --iters 3 \
    --warmup 1 --json > "$TMP/bad.json" 2> "$TMP/bad.err" || rc=$?
[ "$rc" -eq 1 ] || { cat "$TMP/bad.err"; fail "a client that received wrong data exited $rc"; }
grep -q "data integrity check failed: the client received wrong data in warmup iteration 0" \
    "$TMP/bad.err" || { cat "$TMP/bad.err"; fail "no integrity error message"; }
python3 - "$TMP/bad.json" <<'PY'
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["integrity"] == "failed" and "wrong data" in o["error"], o
print("ok: the client reports wrong data:", o["error"])
PY
{ wait "$FAKE"; } 2>/dev/null || true
untrack_pid "$FAKE"

# --once: serves one client and exits with its result.
start_pp once --once
ONCE_PID=$PP_PID
"$VMIO_BENCH" pingpong --connect "127.0.0.1:$PP_PORT" --sizes 8 --iters 10 --json > "$TMP/once.json"
check_json "$TMP/once.json" 8 8 10
wait_exit "$ONCE_PID" 10
[ "$WAIT_RC" -eq 0 ] || fail "--once server exited $WAIT_RC"
ok "--once server exited 0 after its client"
