# SPDX-License-Identifier: GPL-2.0
# The module cannot be unloaded while attached to a device.
. tests/lib.sh
insmod "$BLKSNAP_MODULE" || fail "insmod"
dev=$(new_loop 32M)
$BLKSNAP attach -d "$dev" || fail "attach"
if rmmod blksnap 2>/dev/null; then fail "rmmod succeeded while attached"; fi
grep -q '^blksnap ' /proc/modules || fail "module gone"
[ "$(filter_of "$dev")" = blksnap ] || fail "filter gone"
$BLKSNAP detach -d "$dev" || fail "detach"
rmmod blksnap || fail "rmmod after detach"
exit 0
