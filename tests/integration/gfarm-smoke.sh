#!/bin/bash
# The Gfarm test environment itself, with Gfarm's own tools only: two file
# system nodes up, a file registered, listed, exported and compared,
# replicated to the second node, a file whose only replica is on the second
# node, and gfarm2fs (FUSE) reading and writing. If this fails, the gfarm://
# tests cannot mean anything. Runs under meson (after functions.sh) or
# by hand: bash tests/integration/gfarm-smoke.sh
if [ -n "${VMIOD:-}" ] && [ -n "${VMIO_CP:-}" ]; then
    . "$(dirname "$0")/functions.sh"
fi
. "$(dirname "$0")/gfarm-env.sh"

command -v cmp >/dev/null 2>&1 || skip "cmp is not installed"
# shellcheck disable=SC2119
gfarm_up

# gfwhere_is PATH HOST...: the replicas of PATH are exactly on HOST...
gfwhere_is() {
    local path=$1 got want
    shift
    got=$(gfwhere "$path" 2>&1 | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ') ||
        gf_fail "gfwhere $path: $got"
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    [ "$got" = "$want" ] || gf_fail "replicas of $path are on '$got', expected '$want'"
}

# 1. Both file system nodes are known to gfmd and answer.
gfhost -lv >"$TMP/gfhost.out" 2>&1 || { cat "$TMP/gfhost.out"; gf_fail "gfhost -lv failed"; }
for h in "$GF_HOST1" "$GF_HOST2"; do
    # "load/load/load s arch ncpu host port ..." (s: sharedsecret auth OK)
    awk -v h="$h" '$1 ~ /^[0-9.]+\/[0-9.]+\/[0-9.]+$/ && $2 == "s" && $5 == h { f = 1 } END { exit !f }' \
        "$TMP/gfhost.out" || { cat "$TMP/gfhost.out"; gf_fail "gfsd $h is not up in gfhost -lv"; }
done
gfsched -w >"$TMP/gfsched.out" 2>&1 || gf_fail "gfsched -w failed"
for h in "$GF_HOST1" "$GF_HOST2"; do
    grep -qx "$h" "$TMP/gfsched.out" || { cat "$TMP/gfsched.out"; gf_fail "gfmd does not schedule $h"; }
done
ok "two gfsd up: $GF_HOST1:$GF_PORT1 and $GF_HOST2:$GF_PORT2"

# 2. Register on node 1, list, export to a file (never a pipe: with direct
#    local access gfexport stops at the pipe size).
head -c $(( 5 * 1048576 + 12345 )) /dev/urandom > "$TMP/a.bin"
size=$(stat -c %s "$TMP/a.bin")
gfreg -h "$GF_HOST1" "$TMP/a.bin" "$GF_DIR/a.bin" || gf_fail "gfreg -h $GF_HOST1 failed"
gfls -l "$GF_DIR/a.bin" >"$TMP/gfls.out" || gf_fail "gfls -l failed"
[ "$(awk '{ print $5 }' "$TMP/gfls.out")" = "$size" ] ||
    { cat "$TMP/gfls.out"; gf_fail "gfls -l does not show $size bytes"; }
gfwhere_is "$GF_DIR/a.bin" "$GF_HOST1"
gfexport "$GF_DIR/a.bin" > "$TMP/a.out" || gf_fail "gfexport failed"
cmp "$TMP/a.bin" "$TMP/a.out" || gf_fail "gfexport returned different data"
ok "gfreg/gfls -l/gfexport, $size bytes on $GF_HOST1"

# The instance's direct_local_access setting is what the client uses: when
# disabled, data goes through gfsd and a pipe gets the whole file.
if grep -qx 'direct_local_access disable' "$GFARM_CONFIG_FILE"; then
    piped=$(gfexport "$GF_DIR/a.bin" | wc -c)
    [ "$piped" -eq "$size" ] ||
        gf_fail "gfexport into a pipe gave $piped of $size bytes: direct local access still on?"
    ok "direct_local_access disabled: gfexport through gfsd into a pipe is complete"
fi

# 3. A second replica on node 2; read it from node 2 explicitly.
gfrep -q -D "$GF_HOST2" "$GF_DIR/a.bin" || gf_fail "gfrep -D $GF_HOST2 failed"
gfwhere_is "$GF_DIR/a.bin" "$GF_HOST1" "$GF_HOST2"
gfexport -h "$GF_HOST2" "$GF_DIR/a.bin" > "$TMP/a2.out" || gf_fail "gfexport -h $GF_HOST2 failed"
cmp "$TMP/a.bin" "$TMP/a2.out" || gf_fail "the replica on $GF_HOST2 differs"
ok "gfrep -D $GF_HOST2: replicas on $GF_HOST1 and $GF_HOST2, both read back"

# gfprep: two replicas of everything in a directory, and a migration
# (-m) that leaves the only replica on node 2.
gfmkdir "$GF_DIR/prep" || gf_fail "gfmkdir failed"
gfreg -h "$GF_HOST1" "$TMP/a.bin" "$GF_DIR/prep/p.bin" || gf_fail "gfreg into prep/ failed"
gfreg -h "$GF_HOST1" "$TMP/a.bin" "$GF_DIR/m.bin" || gf_fail "gfreg m.bin failed"
gfprep -N 2 "gfarm://$GF_DIR/prep" >"$TMP/gfprep.out" 2>&1 ||
    { cat "$TMP/gfprep.out"; gf_fail "gfprep -N 2 failed"; }
gfwhere_is "$GF_DIR/prep/p.bin" "$GF_HOST1" "$GF_HOST2"
gfprep -m -D "$GF_HOST2" "gfarm://$GF_DIR/m.bin" >"$TMP/gfprep.out" 2>&1 ||
    { cat "$TMP/gfprep.out"; gf_fail "gfprep -m -D $GF_HOST2 failed"; }
gfwhere_is "$GF_DIR/m.bin" "$GF_HOST2"
ok "gfprep -N 2 and gfprep -m -D $GF_HOST2"

# 4. A file whose only replica is on node 2.
head -c 3000001 /dev/urandom > "$TMP/b.bin"
gfreg -h "$GF_HOST2" "$TMP/b.bin" "$GF_DIR/b.bin" || gf_fail "gfreg -h $GF_HOST2 failed"
gfwhere_is "$GF_DIR/b.bin" "$GF_HOST2"
gfexport "$GF_DIR/b.bin" > "$TMP/b.out" || gf_fail "gfexport of the $GF_HOST2-only file failed"
cmp "$TMP/b.bin" "$TMP/b.out" || gf_fail "the $GF_HOST2-only file differs"
ok "gfreg -h $GF_HOST2: single replica on $GF_HOST2, read back"

# 5. gfarm2fs: read both files, write a new one, read it back after umount.
command -v gfarm2fs >/dev/null 2>&1 || skip "gfarm2fs is not installed"
[ -c /dev/fuse ] || gf_fail "/dev/fuse is missing: gfarm2fs cannot mount"
gf_mount "$TMP/mnt"
cmp "$TMP/a.bin" "$TMP/mnt/a.bin" || gf_fail "a.bin differs through gfarm2fs"
cmp "$TMP/b.bin" "$TMP/mnt/b.bin" || gf_fail "b.bin differs through gfarm2fs"
head -c $(( 7 * 1048576 + 3 )) /dev/urandom > "$TMP/c.bin"
dd if="$TMP/c.bin" of="$TMP/mnt/c.bin" bs=1M status=none || gf_fail "writing through gfarm2fs failed"
cmp "$TMP/c.bin" "$TMP/mnt/c.bin" || gf_fail "c.bin differs through gfarm2fs"
gf_unmount "$TMP/mnt"
mountpoint -q "$TMP/mnt" && gf_fail "$TMP/mnt is still mounted"
gfexport "$GF_DIR/c.bin" > "$TMP/c.out" || gf_fail "gfexport of the gfarm2fs-written file failed"
cmp "$TMP/c.bin" "$TMP/c.out" || gf_fail "the file written through gfarm2fs differs"
[ "$(gfwhere "$GF_DIR/c.bin" | wc -w)" -eq 1 ] || gf_fail "c.bin should have one replica"
ok "gfarm2fs: read, write, cmp, umount"

gfrm -r "$GF_DIR/a.bin" "$GF_DIR/b.bin" "$GF_DIR/c.bin" "$GF_DIR/m.bin" "$GF_DIR/prep" || gf_fail "gfrm failed"
ok "gfrm"
