#!/bin/sh
# scripts/migrate-corpus-guest.sh: the guest side of scripts/migrate-corpus.sh
# (run by tests/vm/run.sh inside the guest; not useful on a host).
#
# Prepares one workload, then talks to the host through the console and NMIs:
#   @@CORPUS-READY        the workload is prepared: the host stops the guest,
#                         copies its RAM (snapshot 0), resumes it and injects
#                         an NMI (QMP inject-nmi)
#   @@CORPUS-RUNNING      after that NMI the run phase started (memcached:
#                         gets and sets; PostgreSQL: pgbench; idle: nothing);
#                         the host takes the next snapshot(s) and injects an
#                         NMI after the last one
#   @@CORPUS-INFO K=V     facts about the workload for the manifest
# The host wrapper sets CORPUS_WORKLOAD (idle, memcached, postgres) and
# optionally CORPUS_MC_MB, CORPUS_PG_SCALE, CORPUS_IDLE_S and CORPUS_NMI_WAIT.
# The programs come from the read-only ext4 disk /dev/vda (tests/vm/build.sh
# with VM_EXTRA_PKGS), mounted at /x and entered with chroot; their data
# lives in a tmpfs at /x/tmp (guest RAM).
. "${VM_LIB:-/vm/guest/lib.sh}"

W=${CORPUS_WORKLOAD:?CORPUS_WORKLOAD is not set}
MC_MB=${CORPUS_MC_MB:-300}
PG_SCALE=${CORPUS_PG_SCALE:-20}
IDLE_S=${CORPUS_IDLE_S:-20}
NMI_WAIT=${CORPUS_NMI_WAIT:-300}
X=/x
info() { echo "@@CORPUS-INFO $*"; }
inx() { chroot "$X" /bin/busybox env PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    HOME=/tmp TZ=UTC LC_ALL=C "$@"; }
as_pg() { inx /bin/busybox su -s /bin/sh postgres -c "$*"; }

# Total NMIs received (all CPUs); the host's inject-nmi raises it.
nmis() { awk '$1 == "NMI:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }' /proc/interrupts; }
wait_nmi() { # wait_nmi BEFORE: until the count exceeds BEFORE (at most NMI_WAIT s)
    _n=$((NMI_WAIT * 5))
    while [ "$(nmis)" -le "$1" ]; do
        _n=$((_n - 1))
        [ $_n -gt 0 ] || { echo "no NMI from the host in ${NMI_WAIT}s" >&2; return 1; }
        sleep 0.2
    done
}

mount_extra() {
    echo 0 >/proc/sys/kernel/nmi_watchdog 2>/dev/null
    modprobe -a virtio_pci virtio_blk ext4 || return 1
    vm_wait 20 test -b /dev/vda || return 1
    mkdir -p "$X" &&
        mount -t ext4 -o ro,noload /dev/vda "$X" &&
        mount -t proc proc "$X/proc" &&
        mount -t sysfs sysfs "$X/sys" &&
        mount --bind /dev "$X/dev" &&
        mount -t tmpfs -o mode=1777 tmpfs "$X/tmp" &&
        mount -t tmpfs tmpfs "$X/run"
}

# The memcached loader and traffic generator (python3 from the extra disk).
write_mcload() {
    cat >"$X/tmp/mcload.py" <<'EOF'
# Loads memcached with JSON-like cache entries, or sends a get/set mix.
import os, random, signal, socket, sys, threading, time
mode, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(5)
syl = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "den", "gar", "vel", "or",
       "an", "is", "tum", "bre", "che", "dor", "fi", "qua", "ro", "sen", "ul", "zy"]
words = ["".join(rnd.choice(syl) for _ in range(rnd.randint(1, 4))) for _ in range(3000)]
blob = " ".join(rnd.choice(words) for _ in range(800000))
first = words[:400]
cities = [w.capitalize() for w in words[400:600]]

def value(i):
    n = int(rnd.lognormvariate(6.6, 0.8)) + 40
    o = rnd.randrange(len(blob) - n - 1)
    return ('{"id":%d,"user":"%s.%s%d","city":"%s","age":%d,"score":%.4f,'
            '"created":%d,"token":"%032x","tags":["%s","%s"],"bio":"%s"}' % (
                i, rnd.choice(first), rnd.choice(words), rnd.randrange(1000),
                rnd.choice(cities), rnd.randint(18, 90), rnd.random(),
                1700000000 + rnd.randrange(10 ** 7), rnd.getrandbits(128),
                rnd.choice(words), rnd.choice(words), blob[o:o + n])).encode()

s = socket.create_connection(("127.0.0.1", 11211))
def stat(name):
    s.sendall(b"stats\r\n")
    buf = b""
    while not buf.endswith(b"END\r\n"):
        buf += s.recv(65536)
    for line in buf.decode().split("\r\n"):
        p = line.split()
        if len(p) == 3 and p[1] == name:
            return int(p[2])

if mode == "load":
    total, i, out = 0, 0, []
    t0 = time.time()
    while total < mb << 20:
        v = value(i)
        out.append(b"set k%08d 0 0 %d noreply\r\n%s\r\n" % (i, len(v), v))
        total += len(v)
        i += 1
        if len(out) == 256:
            s.sendall(b"".join(out))
            out = []
    s.sendall(b"".join(out))
    print("keys=%d value_bytes=%d load_s=%.1f mc_bytes=%d" % (i, total, time.time() - t0, stat("bytes")))
else:  # traffic: 90% gets, 10% sets of existing keys, from /tmp/traffic.go until killed
    keys = stat("curr_items")
    n = sets = 0
    t0 = time.time()
    def done(*_):
        t = time.time() - t0
        print("@@CORPUS-INFO memcached_traffic requests=%d sets=%d seconds=%.1f sets_per_s=%.0f"
              % (n, sets, t, sets / t), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, done)
    with open("/tmp/traffic.pid", "w") as f:
        f.write("%d\n" % os.getpid())
    open("/tmp/traffic.ready", "w").close()
    while not os.path.exists("/tmp/traffic.go"):  # set up, waiting for the run phase
        time.sleep(0.01)
    t0 = time.time()
    def drain():  # the replies to the gets are read and dropped
        while s.recv(1 << 20):
            pass
    threading.Thread(target=drain, daemon=True).start()
    while True:
        out = []
        for _ in range(64):
            k = rnd.randrange(keys)
            if rnd.random() < 0.1:
                v = value(k)
                out.append(b"set k%08d 0 0 %d noreply\r\n%s\r\n" % (k, len(v), v))
                sets += 1
            else:
                out.append(b"get k%08d\r\n" % k)
        s.sendall(b"".join(out))
        n += 64
EOF
}

prepare_idle() {
    sleep "$IDLE_S"
}

prepare_memcached() {
    write_mcload || return 1
    inx memcached -d -u root -m 512 -t 2 -l 127.0.0.1 -p 11211 -P /tmp/mc.pid || return 1
    vm_wait 20 inx python3 -c 'import socket; socket.create_connection(("127.0.0.1", 11211))' || return 1
    r=$(inx python3 /tmp/mcload.py load "$MC_MB") || return 1
    echo "$r"
    info "memcached_load $r"
    # The traffic generator starts now and waits for /tmp/traffic.go.
    inx python3 /tmp/mcload.py traffic 0 &
    bg=$!
    vm_wait 300 test -f "$X/tmp/traffic.ready"
}
run_memcached() { touch "$X/tmp/traffic.go"; }

prepare_postgres() {
    mkdir -p "$X/tmp/pg" && chown 100:100 "$X/tmp/pg" || return 1
    as_pg "initdb -D /tmp/pg/data -U postgres --locale=C -E UTF8 --auth=trust >/tmp/pg/initdb.log 2>&1" ||
        { cat "$X/tmp/pg/initdb.log"; return 1; }
    cat >>"$X/tmp/pg/data/postgresql.conf" <<'EOF'
listen_addresses = ''
unix_socket_directories = '/tmp'
wal_level = minimal
max_wal_senders = 0
max_wal_size = 256MB
jit = off
EOF
    as_pg "pg_ctl -D /tmp/pg/data -l /tmp/pg/server.log -w -t 300 start" ||
        { cat "$X/tmp/pg/server.log"; return 1; }
    t0=$(cut -d' ' -f1 /proc/uptime)
    as_pg "pgbench -h /tmp -i -s $PG_SCALE postgres" || return 1
    t1=$(cut -d' ' -f1 /proc/uptime)
    size=$(as_pg "psql -h /tmp -At -c 'select pg_database_size(current_database())' postgres")
    info "pgbench_init scale=$PG_SCALE db_bytes=$size init_s=$(awk "BEGIN { print $t1 - $t0 }")"
}
run_postgres() { as_pg "pgbench -h /tmp -c 2 -j 2 -T 600 -P 2 postgres 2>&1 | grep progress" & bg=$!; }

bg=
t mount_extra mount_extra || exit 1
t "prepare_$W" "prepare_$W" || exit 1
free -m
info "guest_mem_total_kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo) mem_free_kb=$(awk '/^MemFree/ {print $2}' /proc/meminfo)"
n0=$(nmis)
echo "@@CORPUS-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
t snapshot_0 wait_nmi "$n0" || exit 1
n1=$(nmis)
case $W in
memcached) run_memcached ;;
postgres) run_postgres ;;
esac
echo "@@CORPUS-RUNNING uptime=$(cut -d' ' -f1 /proc/uptime)"
t snapshots_done wait_nmi "$n1"
free -m
case $W in
memcached) kill "$(cat "$X/tmp/traffic.pid")" ;;
postgres) as_pg "pg_ctl -D /tmp/pg/data -m immediate stop" >/dev/null 2>&1 ;;
esac
[ -z "$bg" ] || wait "$bg"
info "done uptime=$(cut -d' ' -f1 /proc/uptime)"
