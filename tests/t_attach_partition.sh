# SPDX-License-Identifier: GPL-2.0
# The filter attaches to a partition alone; deleting the partition detaches it.
. tests/lib.sh
load_module
dev=$(new_loop 64M -P)
printf 'label: gpt\n,20M\n,20M\n' | sfdisk -q "$dev" || fail "sfdisk"
partx -u "$dev" 2>/dev/null
[ -b "${dev}p1" ] || fail "no ${dev}p1"

$BLKSNAP attach -d "${dev}p1" || fail "attach to partition"
[ "$(filter_of "${dev}p1")" = blksnap ] || fail "partition has no filter"
[ -z "$(filter_of "$dev")" ] || fail "whole disk got the filter"
[ -z "$(filter_of "${dev}p2")" ] || fail "other partition got the filter"
$BLKSNAP detach -d "${dev}p1" || fail "detach"

step "delete a filtered partition"
$BLKSNAP attach -d "${dev}p2" || fail "attach to p2"
delpart "$dev" 2 || fail "delpart"
[ ! -e "/sys/class/block/$(basename "$dev")p2" ] || fail "partition still there"
rmmod blksnap || fail "rmmod after the partition went away"
exit 0
