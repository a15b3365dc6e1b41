#!/bin/sh
# ABI check of the shared library: the SONAME is the frozen libvmio.so.0,
# it exports exactly the global symbols of the version script (nothing
# internal leaks, nothing listed is missing), every one of them carries a
# version from the script, and no other version node exists.
# usage: check-abi.sh LIBRARY VERSION-SCRIPT
set -eu
lib=$1
map=$2

for tool in nm readelf awk sort comm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found"
        exit 77
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libvmio.so.0" ]; then
    echo "FAIL: SONAME is '$soname', expected libvmio.so.0"
    status=1
fi

# Names and versions from the script: "VMIO_x.y {" opens a stanza.
awk '
    /^[ \t]*VMIO_[0-9.]+[ \t]*\{/ { sub(/^[ \t]*/, ""); sub(/[ \t]*\{.*/, ""); print > "'"$tmp"'/map-versions"; next }
    /global:/ { g = 1; next }
    /local:/ { g = 0; next }
    g && /^[ \t]*[A-Za-z_][A-Za-z0-9_]*;/ { s = $1; sub(/;.*/, "", s); print s }
' "$map" | sort -u > "$tmp/map-symbols"
sort -u -o "$tmp/map-versions" "$tmp/map-versions"

nm -D --defined-only "$lib" > "$tmp/nm"
# Version nodes show up as absolute symbols.
awk '$2 == "A" { print $3 }' "$tmp/nm" | sort -u > "$tmp/lib-versions"
awk '$2 != "A" { s = $3; sub(/@.*/, "", s); print s }' "$tmp/nm" | sort -u > "$tmp/lib-symbols"
awk '$2 != "A" && $3 !~ /@@?VMIO_[0-9.]+$/ { print $3 }' "$tmp/nm" > "$tmp/unversioned"

if [ ! -s "$tmp/map-symbols" ]; then
    echo "FAIL: no global symbols found in $map"
    status=1
fi
bad=$(grep -v '^vmio_' "$tmp/lib-symbols" || true)
if [ -n "$bad" ]; then
    echo "FAIL: exported symbols without the vmio_ prefix:"
    echo "$bad"
    status=1
fi
extra=$(comm -23 "$tmp/lib-symbols" "$tmp/map-symbols")
if [ -n "$extra" ]; then
    echo "FAIL: exported but not in the version script (internal symbols leak):"
    echo "$extra"
    status=1
fi
missing=$(comm -13 "$tmp/lib-symbols" "$tmp/map-symbols")
if [ -n "$missing" ]; then
    echo "FAIL: in the version script but not exported (not defined, or hidden):"
    echo "$missing"
    status=1
fi
if [ -s "$tmp/unversioned" ]; then
    echo "FAIL: exported symbols without a VMIO_ version:"
    cat "$tmp/unversioned"
    status=1
fi
if ! cmp -s "$tmp/lib-versions" "$tmp/map-versions"; then
    echo "FAIL: version nodes differ: library has '$(tr '\n' ' ' < "$tmp/lib-versions")'," \
         "script has '$(tr '\n' ' ' < "$tmp/map-versions")'"
    status=1
fi

if [ "$status" -eq 0 ]; then
    echo "ok: SONAME $soname, $(wc -l < "$tmp/lib-symbols") symbols, versions" \
         "$(tr '\n' ' ' < "$tmp/lib-versions")"
fi
exit "$status"
