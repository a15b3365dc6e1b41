#!/bin/sh
# The migration sender's Xen dirty source (libvmio/migrate/dirty-xen.c) on
# a live PVH domU: mapping, log-dirty rounds, pause, and a pre-copy made
# from the reported pages that must equal the paused memory
# (tests/xen/xen-dirty-test.c). Then its errors: no such domain, dom0, a
# PV domain (Debian's Xen has no shadow paging, so no log-dirty on PV).
# The PVH domU "domu1" is left running for the next script, the PV domU
# "dirtypv" paused for 30-group.sh (booting a domU takes 20-30 s here).
. "${XEN_LIB:-/xen/guest/lib.sh}"

D=$(domu_up domu1 128)
t dirty/domu-up test -n "$D" || exit 1
echo "domU domu1 is domain $D"
t dirty/rounds xen-dirty-test "$D" 4
# The domain runs again after the source is gone.
running() { xl list domu1 | awk 'NR == 2 { exit ($5 ~ /p/) }'; }
t dirty/unpaused running

t dirty/no-such-domain xen-dirty-test --expect 3 30000  # ESRCH
t dirty/dom0 xen-dirty-test --expect 22 0               # EINVAL

P=$(domu_create dirtypv 128 pv)
if t dirty/pv-domu-up test -n "$P"; then
    t dirty/pv-refused xen-dirty-test --expect 95 "$P"  # ENOTSUP
    t dirty/pv-pause xl pause dirtypv
fi
