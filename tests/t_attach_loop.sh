# SPDX-License-Identifier: GPL-2.0
# Attach and detach the filter on a loop device; sysfs shows it.
. tests/lib.sh
load_module
dev=$(new_loop 64M)

[ -z "$(filter_of "$dev")" ] || fail "filter before attach"
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
[ "$(filter_of "$dev")" = blksnap ] || fail "sysfs filter is '$(filter_of "$dev")'"
dmesg | grep -q "tracker attached to $(dev_id "$dev")," || fail "no tracker in dmesg"
$BLKSNAP detach -d "$dev" || fail "detach"
[ -z "$(filter_of "$dev")" ] || fail "filter after detach"
step "attach again after detach"
$BLKSNAP attach -d "$dev" || fail "re-attach"
$BLKSNAP detach -d "$dev" || fail "re-detach"
exit 0
