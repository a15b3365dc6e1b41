#!/bin/bash
# Error paths of URIs and command lines, through vmio-cp: each case asserts
# the exit status and the message (with the API name prefix).
. "$(dirname "$0")/functions.sh"

make_secret "$TMP/secret"
export VMIO_SECRET_FILE="$TMP/secret"
truncate -s 1M "$TMP/src.raw"

# A port that was just listening and is closed now: connection refused.
mkdir "$TMP/export"
start_vmiod srv --export "img=$TMP/export" --secret-file "$TMP/secret"
DEAD_PORT=$VMIOD_PORT
stop_pid "$VMIOD_PID" || fail "vmiod exited with status $? on SIGTERM"

src_fails() { # REGEX URI: vmio-cp URI DST fails to open its source
    expect 1 "cannot open source '.*': vmio_open: .*$1" "$VMIO_CP" -q "$2" "$TMP/dst.raw"
}
src_fails "port 99999 out of range"            "vmio://127.0.0.1:99999/img/x"
src_fails "port 0 out of range"                "vmio://127.0.0.1:0/img/x"
src_fails "bad port '12ab'"                    "vmio://127.0.0.1:12ab/img/x"
src_fails "bad port"                           "vmio://127.0.0.1:/img/x"
src_fails "unterminated '\\['"                 "vmio://[::1/img/x"
src_fails "needs a host"                       "vmio:///img/x"
src_fails "must be /EXPORT/PATH"               "vmio://127.0.0.1/img"
src_fails "must be /EXPORT/PATH"               "vmio://127.0.0.1/img/"
src_fails "unsupported URI scheme 'foo://'"    "foo://127.0.0.1/img/x"
src_fails "bad %-escape"                       "vmio://127.0.0.1/img/a%zzb"
src_fails "control character"                  "vmio://127.0.0.1/img/a%0ab"
src_fails "unknown URI option 'nosuch'"        "vmio://127.0.0.1/img/x?nosuch=1"
src_fails "has no value"                       "vmio://127.0.0.1/img/x?timeout"
src_fails "bad timeout 'abc'"                  "vmio://127.0.0.1/img/x?timeout=abc"
src_fails "fragments are not supported"        "vmio://127.0.0.1/img/x#part"
src_fails "user names in URIs are not supported" "vmio://root@127.0.0.1/img/x"
src_fails "invalid character in URI host"      "vmio://bad!host/img/x"
# transport=rdma never falls back: no device here (or no RDMA in the build)
src_fails "(RDMA is not available|no RDMA device|RDMA transport is not built in)" \
    "vmio://127.0.0.1/img/x?transport=rdma"
src_fails "bad rdma-inline '-1'"                "vmio://127.0.0.1/img/x?rdma-inline=-1"
src_fails "bad rdma-busy-poll 'x'"             "vmio://127.0.0.1/img/x?rdma-busy-poll=x"
src_fails "unknown transport 'udp'"            "vmio://127.0.0.1/img/x?transport=udp"
src_fails "cannot name a remote host"          "file://otherhost/tmp/x"
src_fails "cannot connect to 127.0.0.1 port $DEAD_PORT: Connection refused" \
    "vmio://127.0.0.1:$DEAD_PORT/img/x"
src_fails "cannot open .*No such file"         "file://$TMP/missing.raw"
src_fails "is not a regular file"              "$TMP"

# The destination side reports under the same convention.
expect 1 "cannot open destination '.*': vmio_open: .*port 70000 out of range" \
    "$VMIO_CP" -q "$TMP/src.raw" "vmio://127.0.0.1:70000/img/x"

# No secret anywhere.
expect 1 "vmio_open: .*no shared secret" \
    env -u VMIO_SECRET_FILE "$VMIO_CP" -q "vmio://127.0.0.1:$DEAD_PORT/img/x" "$TMP/dst.raw"

# Usage errors exit 2.
expect 2 "expected SRC and DST, got 1 argument" "$VMIO_CP" "$TMP/src.raw"
expect 2 "expected SRC and DST, got 3 arguments" "$VMIO_CP" a b c
expect 2 "invalid option '--bogus'" "$VMIO_CP" --bogus a b
expect 2 "invalid --request-size '1k'" "$VMIO_CP" -r 1k a b
expect 2 "invalid --queue-depth '0'" "$VMIO_CP" -Q 0 a b
expect 1 "are the same file" "$VMIO_CP" "$TMP/src.raw" "file://$TMP/src.raw"
[ ! -e "$TMP/dst.raw" ] || fail "a failed copy left $TMP/dst.raw behind"
