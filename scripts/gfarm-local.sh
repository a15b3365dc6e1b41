#!/bin/bash
# A private Gfarm 2.7 file system on the loopback interface, for libvmio's
# gfarm:// tests and for trying the backend by hand. Debian's packages
# (gfmd, gfsd, gfarm-client, gfarm2fs) and PostgreSQL, no systemd: every
# daemon runs as a plain process with its pid file, configuration, data
# and log under one base directory, nothing in /etc or in $HOME.
#
#   gfarm-local.sh install       apt-get the packages that are missing (root)
#   gfarm-local.sh setup [--one] create the instance if needed and start it:
#                                PostgreSQL, gfmd and two gfsd (one with
#                                --one), then wait until both are usable
#   gfarm-local.sh stop [purge]  unmount gfarm2fs mounts under the base,
#                                stop the daemons; purge removes the base
#   gfarm-local.sh env           print the export lines for clients
#   gfarm-local.sh status        show the daemons; non-zero if one is down
#
# Layout of the base directory:
#   etc/gfarm2.conf   client configuration (GFARM_CONFIG_FILE points here)
#   etc/gfmd.conf, etc/gfsd.conf, etc/usermap, etc/shared_key
#   pgdata/           PostgreSQL cluster (owned by "postgres" when run as root)
#   spool1/, spool2/  the two gfsd spools
#   log/*.log         one log per daemon; run/*.pid
#   gfarm-local.env   the settings the instance was created with
#
# Two file system nodes on one machine: gfsd 1 is host $GFARM_HOST1
# (default "localhost") listening on $GFARM_ADDR1 (127.0.0.1), gfsd 2 is
# host $GFARM_HOST2 (default "127.0.0.2", an IP literal) listening on
# $GFARM_ADDR2 (127.0.0.2). Both addresses are on lo.
#
# Environment (read when the instance is created; later runs reuse what
# gfarm-local.env recorded):
#   GFARM_BASE             base directory (default ${TMPDIR:-/tmp}/vmio-gfarm)
#   GFARM_PORT_BASE        first of four TCP ports (default 20600): gfsd 1 =
#                          base, gfmd = base+1, PostgreSQL = base+2, gfsd 2 =
#                          base+3; "auto" takes the first free block of four
#                          at 20600, 20610, ... 20990
#   GFARM_GFSD1_PORT GFARM_GFMD_PORT GFARM_PG_PORT GFARM_GFSD2_PORT
#                          override one port each
#   GFARM_GFSD_COUNT       1 or 2 (default 2; "setup --one" sets 1)
#   GFARM_DIRECT_LOCAL_ACCESS  enable|disable (default disable): with
#                          enable, a client on this host reads and writes
#                          the spool file itself and never talks to gfsd
#                          for the data, so the network path goes untested
#   GFARM_AUTH_NET         who may connect (default 127.0.0.0/8)
#   GFARM_BUSY_LOAD        schedule_busy_load_thresh (default 1000): every
#                          node shares this machine's load average, and a
#                          node above the threshold is "busy", which makes
#                          gfprep refuse it as a destination; a loaded CI
#                          machine must not change what the tests see
#   GFARM_TIMEOUT          seconds to wait for each daemon (default 30)
#   PG_BINDIR              PostgreSQL programs (default: newest
#                          /usr/lib/postgresql/*/bin)
#
# The gfsd also create a UNIX socket /tmp/.gfarm-gfsd<addr>-<port>/ (a
# fixed place in gfsd; it removes it when it stops).
set -euo pipefail

PROG=gfarm-local
GFARM_PKGS="gfmd gfsd gfarm-client gfarm2fs fuse3 libgfarm-dev"

log() { printf '[%s %6s] %s\n' "$PROG" "$(elapsed)" "$*"; }
die() { echo "$PROG: error: $*" >&2; exit 1; }
T0=$(date +%s%N)
elapsed() { local d=$(( ($(date +%s%N) - T0) / 1000000 )); printf '%d.%03ds' $((d / 1000)) $((d % 1000)); }

usage() {
    sed -n '8,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

BASE=${GFARM_BASE:-${TMPDIR:-/tmp}/vmio-gfarm}
case $BASE in
/*) ;;
*) BASE=$PWD/$BASE ;;
esac
BASE=${BASE%/}
STATE=$BASE/gfarm-local.env
MARK=$BASE/.gfarm-local
CONF=$BASE/etc/gfarm2.conf
PGDATA=$BASE/pgdata
TIMEOUT=${GFARM_TIMEOUT:-30}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Settings: recorded at creation, or derived from the environment.
load_settings() {
    if [ -f "$STATE" ]; then
        # shellcheck disable=SC1090
        . "$STATE"
        return
    fi
    local pb=${GFARM_PORT_BASE:-20600}
    if [ "$pb" = auto ]; then
        pb=$(find_free_block) || die "no free block of 4 ports in 20600..20993"
    fi
    case $pb in ''|*[!0-9]*) die "GFARM_PORT_BASE: not a number: $pb" ;; esac
    GFL_GFSD1_PORT=${GFARM_GFSD1_PORT:-$pb}
    GFL_GFMD_PORT=${GFARM_GFMD_PORT:-$((pb + 1))}
    GFL_PG_PORT=${GFARM_PG_PORT:-$((pb + 2))}
    GFL_GFSD2_PORT=${GFARM_GFSD2_PORT:-$((pb + 3))}
    GFL_HOST1=${GFARM_HOST1:-localhost}
    GFL_ADDR1=${GFARM_ADDR1:-127.0.0.1}
    GFL_HOST2=${GFARM_HOST2:-127.0.0.2}
    GFL_ADDR2=${GFARM_ADDR2:-127.0.0.2}
    GFL_NGFSD=${GFARM_GFSD_COUNT:-2}
    GFL_DLA=${GFARM_DIRECT_LOCAL_ACCESS:-disable}
    GFL_AUTH_NET=${GFARM_AUTH_NET:-127.0.0.0/8}
    GFL_BUSY_LOAD=${GFARM_BUSY_LOAD:-1000}
    GFL_PG_BINDIR=${PG_BINDIR:-$(newest_pg_bindir)}
    case $GFL_NGFSD in 1|2) ;; *) die "GFARM_GFSD_COUNT must be 1 or 2" ;; esac
    case $GFL_DLA in enable|disable) ;; *) die "GFARM_DIRECT_LOCAL_ACCESS must be enable or disable" ;; esac
}

newest_pg_bindir() {
    local d
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    echo "$d"
}

# port_busy PORT: something listens on 127.0.0.1:PORT or 127.0.0.2:PORT.
port_busy() {
    ss -Hltnu 2>/dev/null | awk -v p="$1" '{ n = split($5, a, ":"); if (a[n] == p) f = 1 } END { exit !f }'
}

find_free_block() {
    local b i busy
    for b in $(seq 20600 10 20990); do
        busy=0
        for i in 0 1 2 3; do
            if port_busy $((b + i)); then busy=1; break; fi
        done
        [ $busy -eq 1 ] || { echo "$b"; return 0; }
    done
    return 1
}

write_state() {
    cat > "$STATE" <<EOF
# Settings of this Gfarm instance, written by $PROG setup.
GFL_GFSD1_PORT=$GFL_GFSD1_PORT
GFL_GFMD_PORT=$GFL_GFMD_PORT
GFL_PG_PORT=$GFL_PG_PORT
GFL_GFSD2_PORT=$GFL_GFSD2_PORT
GFL_HOST1=$GFL_HOST1
GFL_ADDR1=$GFL_ADDR1
GFL_HOST2=$GFL_HOST2
GFL_ADDR2=$GFL_ADDR2
GFL_NGFSD=$GFL_NGFSD
GFL_DLA=$GFL_DLA
GFL_AUTH_NET=$GFL_AUTH_NET
GFL_BUSY_LOAD=$GFL_BUSY_LOAD
GFL_PG_BINDIR=$GFL_PG_BINDIR
EOF
}

print_env() {
    echo "export GFARM_CONFIG_FILE=$CONF"
    echo "export GFARM_BASE=$BASE"
    echo "export GF_HOST1=$GFL_HOST1 GF_PORT1=$GFL_GFSD1_PORT GF_ADDR1=$GFL_ADDR1"
    if [ "$GFL_NGFSD" -ge 2 ]; then
        echo "export GF_HOST2=$GFL_HOST2 GF_PORT2=$GFL_GFSD2_PORT GF_ADDR2=$GFL_ADDR2"
    else
        echo "export GF_HOST2= GF_PORT2= GF_ADDR2="
    fi
    echo "export GF_GFMD_PORT=$GFL_GFMD_PORT GF_PG_PORT=$GFL_PG_PORT"
}

# ---- helpers ---------------------------------------------------------

# as_pg CMD...: run a PostgreSQL program as the cluster owner.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# alive PIDFILE NAME: the pid file names a running process called NAME.
alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(head -n 1 "$1")
    case $pid in ''|*[!0-9]*) return 1 ;; esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && ! gone "$pid"
}

# gone PID: the process has exited (a zombie counts: init reaps it later).
gone() {
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
    [ -z "$st" ] || [ "$st" = Z ]
}

# show_log FILE: the end of a log, for an error message.
show_log() {
    [ -f "$1" ] || { echo "($1 does not exist)" >&2; return 0; }
    echo "---- last lines of $1:" >&2
    tail -n 25 "$1" >&2
}

# wait_for WHAT LOG PIDFILE NAME CMD...: poll CMD every 0.1 s for at most
# $TIMEOUT s; give up early if the daemon (PIDFILE/NAME) died.
wait_for() {
    local what=$1 logf=$2 pidf=$3 name=$4
    shift 4
    local deadline=$(( $(date +%s) + TIMEOUT ))
    until "$@" >/dev/null 2>&1; do
        # (The daemon writes its pid file a moment after it detaches.)
        if [ -s "$pidf" ] && ! alive "$pidf" "$name"; then
            show_log "$logf"
            die "$what: $name exited (see $logf)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            show_log "$logf"
            die "$what: not ready after ${TIMEOUT}s (see $logf)"
        fi
        sleep 0.1
    done
}

gf() { GFARM_CONFIG_FILE=$CONF "$@"; }

# host_up HOST: gfmd has the gfsd of HOST connected (it would schedule it).
host_up() { gf gfsched -w 2>/dev/null | grep -qx "$1"; }
all_hosts_up() {
    host_up "$GFL_HOST1" || return 1
    [ "$GFL_NGFSD" -lt 2 ] || host_up "$GFL_HOST2"
}

# ---- install ---------------------------------------------------------

do_install() {
    local p missing=()
    for p in $GFARM_PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    if [ ${#missing[@]} -eq 0 ]; then
        log "all packages are installed"
        return 0
    fi
    is_root || die "installing ${missing[*]} needs root"
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install ${missing[*]}"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# ---- setup -----------------------------------------------------------

check_prereqs() {
    local c
    for c in gfmd gfsd gfhost gfkey gfsched gfls; do
        command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$c" >/dev/null 2>&1 ||
            die "$c not found: run '$0 install'"
    done
    for c in initdb pg_ctl psql; do
        [ -x "$GFL_PG_BINDIR/$c" ] || die "$GFL_PG_BINDIR/$c not found: run '$0 install'"
    done
    command -v ss >/dev/null 2>&1 || die "ss (iproute2) not found"
    if is_root; then
        getent passwd postgres >/dev/null || die "user 'postgres' does not exist"
    fi
}

check_ports() {
    local p
    for p in "$GFL_GFSD1_PORT" "$GFL_GFMD_PORT" "$GFL_PG_PORT" "$GFL_GFSD2_PORT"; do
        if port_busy "$p"; then
            ss -Hltnup 2>/dev/null | grep -E ":$p\b" >&2 || true
            die "port $p is in use (stale instance? '$0 stop', or set GFARM_PORT_BASE)"
        fi
    done
}

gen_password() { od -An -tx1 -N18 /dev/urandom | tr -d ' \n'; }

init_postgres() {
    local pw=$1
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    : > "$BASE/log/postgresql.log"
    if is_root; then
        chown postgres: "$PGDATA" "$BASE/log/postgresql.log"
        as_pg test -x "$BASE" ||
            die "user postgres cannot reach $BASE: make its parent directories traversable (chmod o+x)"
    fi
    log "initdb"
    # No fsync: a scratch cluster for tests (it survives a crash of the
    # daemons, not one of the machine), rebuilt in seconds.
    as_pg "$GFL_PG_BINDIR/initdb" -D "$PGDATA" --no-sync --no-locale -E SQL_ASCII \
        --auth-local=peer --auth-host=reject > "$BASE/log/initdb.log" 2>&1 ||
        { show_log "$BASE/log/initdb.log"; die "initdb failed"; }
    cat >> "$PGDATA/postgresql.conf" <<EOF

# ---- $PROG
listen_addresses = '127.0.0.1'
port = $GFL_PG_PORT
unix_socket_directories = '$PGDATA'
password_encryption = scram-sha-256
fsync = off
full_page_writes = off
max_connections = 40
shared_buffers = 32MB
EOF
    cat > "$PGDATA/pg_hba.conf" <<EOF
# TYPE  DATABASE  USER   ADDRESS       METHOD
local   all       all                  peer
host    gfarm     gfarm  127.0.0.1/32  scram-sha-256
EOF
    start_postgres
    log "create the gfarm database"
    as_pg "$GFL_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDATA" -p "$GFL_PG_PORT" \
        -d postgres > "$BASE/log/schema.log" 2>&1 <<EOF ||
SET client_min_messages = warning;
CREATE ROLE gfarm LOGIN PASSWORD '$pw';
CREATE DATABASE gfarm;
\\connect gfarm
SET client_min_messages = warning;
\\i /usr/share/gfarm/config/gfarm.sql
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO gfarm;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO gfarm;
INSERT INTO SeqNum (name, value) VALUES ('', '1');
EOF
        { show_log "$BASE/log/schema.log"; die "creating the gfarm database failed"; }
}

start_postgres() {
    if alive "$PGDATA/postmaster.pid" postgres; then
        log "postgresql already running"
        return 0
    fi
    # A postmaster that was killed leaves its pid file, and PostgreSQL will
    # not start while that pid exists, even as a zombie not yet reaped.
    local old i
    old=$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true)
    case $old in
    ''|*[!0-9]*) ;;
    *)
        for i in $(seq $((TIMEOUT * 10))); do
            [ "$(cat "/proc/$old/comm" 2>/dev/null)" = postgres ] || break
            sleep 0.1
        done
        ;;
    esac
    log "start postgresql on 127.0.0.1:$GFL_PG_PORT"
    as_pg "$GFL_PG_BINDIR/pg_ctl" start -w -t "$TIMEOUT" -s -D "$PGDATA" 2>>"$BASE/log/pg_ctl.log" \
        -l "$BASE/log/postgresql.log" ||
        { show_log "$BASE/log/postgresql.log"; die "postgresql did not start"; }
}

write_configs() {
    local pw=$1 auth="auth enable sharedsecret $GFL_AUTH_NET"
    local common
    common="metadb_server_host 127.0.0.1
metadb_server_port $GFL_GFMD_PORT
$auth
shared_key_file $BASE/etc/shared_key
sockopt keepalive
sockopt tcp_nodelay
schedule_busy_load_thresh $GFL_BUSY_LOAD"
    (
        umask 077
        printf '%s\ndirect_local_access %s\n' "$common" "$GFL_DLA" > "$CONF"
        printf '%s\nlocal_user_map %s\n' "$common" "$BASE/etc/usermap" > "$BASE/etc/gfsd.conf"
        cat > "$BASE/etc/gfmd.conf" <<EOF
$common
postgresql_server_host 127.0.0.1
postgresql_server_port $GFL_PG_PORT
postgresql_dbname gfarm
postgresql_user gfarm
postgresql_password "$pw"
admin_user $(id -un)
local_user_map $BASE/etc/usermap
metadb_replication disable
EOF
        # The gfsd and gfmd service users map to whoever runs them.
        printf '_gfarmfs %s\n_gfarmmd %s\n' "$(id -un)" "$(id -un)" > "$BASE/etc/usermap"
    )
    chmod 644 "$CONF" "$BASE/etc/usermap"
    # A shared key of our own (not ~/.gfarm_shared_key), valid for a year.
    gf gfkey -f -p 31536000 > "$BASE/log/gfkey.log" 2>&1 ||
        { show_log "$BASE/log/gfkey.log"; die "gfkey failed"; }
    [ -s "$BASE/etc/shared_key" ] || die "gfkey did not write $BASE/etc/shared_key"
}

start_gfmd() {
    if alive "$BASE/run/gfmd.pid" gfmd; then
        log "gfmd already running"
    else
        stop_daemons gfmd "$BASE/run/gfmd.pid"
        log "start gfmd on port $GFL_GFMD_PORT"
        gfmd -P "$BASE/run/gfmd.pid" -f "$BASE/etc/gfmd.conf" -F "$BASE/log/gfmd.log" -L info ||
            { show_log "$BASE/log/gfmd.log"; die "gfmd failed to start"; }
    fi
    # A client retries a refused connection only after a second: wait for
    # the listening socket first.
    wait_for "gfmd" "$BASE/log/gfmd.log" "$BASE/run/gfmd.pid" gfmd port_busy "$GFL_GFMD_PORT"
    wait_for "gfmd" "$BASE/log/gfmd.log" "$BASE/run/gfmd.pid" gfmd gf gfls -d /
}

# start_gfsd N HOST ADDR PORT
start_gfsd() {
    local n=$1 host=$2 addr=$3 port=$4
    local spool=$BASE/spool$n
    if ! gf gfhost -M "$host" 2>/dev/null | grep -q .; then
        gf gfhost -c -a "$(gfarm.arch.guess 2>/dev/null || echo x86_64-linux)" -p "$port" \
            -n "$(nproc)" "$host" > "$BASE/log/gfhost$n.log" 2>&1 ||
            { show_log "$BASE/log/gfhost$n.log"; die "gfhost -c $host failed"; }
    fi
    if alive "$BASE/run/gfsd$n.pid" gfsd; then
        log "gfsd $n already running"
        return 0
    fi
    stop_daemons gfsd "$BASE/run/gfsd$n.pid"   # what a killed gfsd left behind
    mkdir -p "$spool"
    chmod 700 "$spool"
    log "start gfsd $n: host $host on $addr:$port"
    gfsd -P "$BASE/run/gfsd$n.pid" -f "$BASE/etc/gfsd.conf" -h "$host" -l "$addr" \
        -r "$spool" -F "$BASE/log/gfsd$n.log" -L info ||
        { show_log "$BASE/log/gfsd$n.log"; die "gfsd $n failed to start"; }
}

do_setup() {
    local pw fresh=0
    if [ "${1:-}" = --one ]; then
        [ -f "$STATE" ] && [ "$GFL_NGFSD" != 1 ] &&
            die "$BASE was created with $GFL_NGFSD gfsd; '$0 stop purge' first"
        GFL_NGFSD=1
    fi
    export PATH=$PATH:/usr/sbin
    check_prereqs
    if [ ! -f "$MARK" ]; then
        fresh=1
        case $BASE in
        *[[:space:]\"\']*) die "GFARM_BASE must not contain blanks or quotes: $BASE" ;;
        esac
        # PostgreSQL's socket $PGDATA/.s.PGSQL.<port> must fit in sun_path.
        [ ${#PGDATA} -le 90 ] || die "GFARM_BASE is too long for PostgreSQL's socket path: $BASE"
        if [ -e "$BASE" ] && [ -n "$(ls -A "$BASE" 2>/dev/null)" ]; then
            die "$BASE exists, is not empty and was not made by $PROG"
        fi
        check_ports
        mkdir -p "$BASE"
        chmod 755 "$BASE"
        mkdir -p "$BASE/etc" "$BASE/log" "$BASE/run"
        touch "$MARK"
        write_state
        pw=$(gen_password)
        init_postgres "$pw"
        write_configs "$pw"
        echo initialized > "$MARK"
    else
        if [ "$(cat "$MARK")" != initialized ] || [ ! -f "$STATE" ]; then
            die "$BASE: an earlier setup did not complete; '$0 stop purge' and set up again"
        fi
        start_postgres
    fi
    start_gfmd
    start_gfsd 1 "$GFL_HOST1" "$GFL_ADDR1" "$GFL_GFSD1_PORT"
    [ "$GFL_NGFSD" -lt 2 ] || start_gfsd 2 "$GFL_HOST2" "$GFL_ADDR2" "$GFL_GFSD2_PORT"
    # Up = gfmd would schedule it (gfsched -w): connected, and not short of
    # disk space (minimum_free_disk_space, 512 MiB by default).
    wait_for "gfsd 1 ($GFL_HOST1, in gfsched -w)" "$BASE/log/gfsd1.log" "$BASE/run/gfsd1.pid" gfsd \
        host_up "$GFL_HOST1"
    [ "$GFL_NGFSD" -lt 2 ] ||
        wait_for "gfsd 2 ($GFL_HOST2, in gfsched -w)" "$BASE/log/gfsd2.log" "$BASE/run/gfsd2.pid" gfsd \
            host_up "$GFL_HOST2"
    [ $fresh -eq 0 ] || log "created $BASE"
    log "ready: eval \"\$($0 env)\"  (GFARM_BASE=$BASE)"
}

# ---- stop / status ---------------------------------------------------

# session_members SID NAME: processes called NAME in session SID. A gfsd
# daemon leads its own session; its children (back channel, one per
# client) stay in it, and outlive a master killed by SIGKILL.
session_members() {
    ps -eo pid=,sid=,comm= | awk -v s="$1" -v n="$2" '$2 == s && $3 == n { print $1 }'
}

# stop_daemons NAME PIDFILE...: SIGTERM to each daemon and to what is left
# of its session, wait up to 10 s, then SIGKILL.
stop_daemons() {
    local name=$1 f pid p i sids=() pids=()
    shift
    for f in "$@"; do
        [ -s "$f" ] || { rm -f "$f"; continue; }
        pid=$(head -n 1 "$f")
        case $pid in ''|*[!0-9]*) rm -f "$f"; continue ;; esac
        sids+=("$pid")
        for p in $(session_members "$pid" "$name"); do
            gone "$p" || { kill -TERM "$p" 2>/dev/null || true; pids+=("$p"); }
        done
        rm -f "$f"
    done
    for p in ${pids[@]+"${pids[@]}"}; do
        for i in $(seq 100); do
            gone "$p" && break
            sleep 0.1
        done
        if ! gone "$p"; then
            log "$name ($p) ignored SIGTERM: SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    for pid in ${sids[@]+"${sids[@]}"}; do
        for p in $(session_members "$pid" "$name"); do
            gone "$p" || kill -KILL "$p" 2>/dev/null || true
        done
    done
    [ ${#pids[@]} -eq 0 ] || log "stopped $name (${pids[*]})"
}

unmount_all() {
    local mp
    # Deepest first; only FUSE mounts of gfarm2fs below the base.
    awk -v b="$BASE/" '$3 ~ /^fuse/ && index($2, b) == 1 { print $2 }' /proc/self/mounts |
        sort -r | while read -r mp; do
            mp=$(printf '%b' "$mp")   # /proc/mounts escapes blanks as \040
            log "unmount $mp"
            fusermount3 -u "$mp" 2>/dev/null || fusermount -u "$mp" 2>/dev/null ||
                umount "$mp" 2>/dev/null || umount -l "$mp" || true
        done
}

do_stop() {
    if [ ! -f "$MARK" ]; then
        log "$BASE: no instance"
        [ "${1:-}" != purge ] || [ ! -e "$BASE" ] || die "$BASE was not made by $PROG: not removing it"
        return 0
    fi
    unmount_all
    stop_daemons gfsd "$BASE/run/gfsd1.pid" "$BASE/run/gfsd2.pid"
    stop_daemons gfmd "$BASE/run/gfmd.pid"
    if alive "$PGDATA/postmaster.pid" postgres; then
        as_pg "$GFL_PG_BINDIR/pg_ctl" stop -s -m fast -w -t "$TIMEOUT" -D "$PGDATA" ||
            die "pg_ctl stop failed (see $BASE/log/postgresql.log)"
        log "stopped postgresql"
    fi
    if [ "${1:-}" = purge ]; then
        rm -rf "$BASE"
        log "removed $BASE"
    fi
}

do_status() {
    local rc=0 n
    [ -f "$MARK" ] || { echo "$BASE: no instance"; return 1; }
    if alive "$PGDATA/postmaster.pid" postgres; then
        echo "postgresql: running, 127.0.0.1:$GFL_PG_PORT"
    else
        echo "postgresql: stopped"; rc=1
    fi
    if alive "$BASE/run/gfmd.pid" gfmd; then
        echo "gfmd: running (pid $(cat "$BASE/run/gfmd.pid")), port $GFL_GFMD_PORT"
    else
        echo "gfmd: stopped"; rc=1
    fi
    for n in $(seq "$GFL_NGFSD"); do
        local host port
        if [ "$n" = 1 ]; then host=$GFL_HOST1 port=$GFL_GFSD1_PORT; else host=$GFL_HOST2 port=$GFL_GFSD2_PORT; fi
        if alive "$BASE/run/gfsd$n.pid" gfsd; then
            echo "gfsd $n: running (pid $(cat "$BASE/run/gfsd$n.pid")), host $host port $port"
        else
            echo "gfsd $n: stopped (host $host)"; rc=1
        fi
    done
    if [ $rc -eq 0 ]; then
        timeout 20 env GFARM_CONFIG_FILE="$CONF" gfhost -lv 2>&1 || rc=1
        all_hosts_up || { echo "gfmd does not see every gfsd as up"; rc=1; }
    fi
    return $rc
}

# ---- main ------------------------------------------------------------

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
install) do_install ;;
setup) load_settings; do_setup "$@" ;;
stop) load_settings; do_stop "$@" ;;
status) load_settings; do_status ;;
env)
    [ -f "$STATE" ] || die "$BASE: no instance (run '$0 setup')"
    load_settings
    print_env
    ;;
*) usage ;;
esac
