#!/bin/bash
# vmiod and its client in two network namespaces joined by a veth pair, so
# that the traffic crosses a real (virtual) link with its own addresses
# instead of loopback: copy in and out, cmp.
. "$(dirname "$0")/functions.sh"
require_cmd ip cmp

[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
NS_SRV=vmio-srv-$$
NS_CLI=vmio-cli-$$
VETH_SRV=vms$$
VETH_CLI=vmc$$
# A /30 in 10.0.0.0/8 chosen per run: only these two namespaces use it.
NET=10.$(( $$ % 200 + 20 )).$(( ($$ / 200) % 250 ))
ip netns add "$NS_SRV" 2>"$TMP/netns.err" || skip "ip netns add not permitted: $(cat "$TMP/netns.err")"
on_exit ip netns del "$NS_SRV"
ip netns add "$NS_CLI" || fail "second ip netns add failed"
on_exit ip netns del "$NS_CLI"
ip link add "$VETH_SRV" netns "$NS_SRV" type veth peer name "$VETH_CLI" netns "$NS_CLI" \
    2>"$TMP/veth.err" || skip "cannot create a veth pair: $(cat "$TMP/veth.err")"
ip -n "$NS_SRV" addr add "$NET.1/30" dev "$VETH_SRV"
ip -n "$NS_CLI" addr add "$NET.2/30" dev "$VETH_CLI"
for ns in "$NS_SRV" "$NS_CLI"; do
    ip -n "$ns" link set lo up
done
ip -n "$NS_SRV" link set "$VETH_SRV" up
ip -n "$NS_CLI" link set "$VETH_CLI" up

make_secret "$TMP/secret"
mkdir "$TMP/export"
VMIOD_WRAP=(ip netns exec "$NS_SRV")
start_vmiod srv --listen "$NET.1:0" --export "img=$TMP/export" --secret-file "$TMP/secret"
URI="vmio://$NET.1:$VMIOD_PORT/img"
export VMIO_SECRET_FILE="$TMP/secret"
CLI=(ip netns exec "$NS_CLI")

make_image "$TMP/src.raw" 48
# Plus 16 MiB of dense data in the middle, so that real volume crosses.
head -c 16M /dev/urandom | dd of="$TMP/src.raw" bs=1M seek=28 conv=notrunc status=none
"${CLI[@]}" "$VMIO_CP" -q "$TMP/src.raw" "$URI/disk.raw"
cmp "$TMP/src.raw" "$TMP/export/disk.raw" || fail "image copied into the namespace differs"
ok "copy in across the veth pair"
"${CLI[@]}" "$VMIO_CP" -q --verify "$URI/disk.raw" "$TMP/back.raw"
cmp "$TMP/src.raw" "$TMP/back.raw" || fail "image copied out of the namespace differs"
ok "copy out across the veth pair"

# The bytes really crossed the link.
rx=$(ip -n "$NS_SRV" -s link show "$VETH_SRV" | awk '/RX:/ && !done { getline; print $1; done = 1 }')
[ "${rx:-0}" -gt $(( 19 * 1048576 )) ] || fail "only ${rx:-0} bytes were received on $VETH_SRV"
ok "$rx bytes received on the server's veth"

stop_pid "$VMIOD_PID" || fail "vmiod exited with status $? on SIGTERM"
