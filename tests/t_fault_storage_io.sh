#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# I/O errors on the difference storage while writes are being copied: the
# storage is a device-mapper device whose table is switched to the "error"
# target after the take. The snapshot must break cleanly (a corrupted event
# with EIO, SNAPSHOTINFO -5, image reads fail), the original must keep every
# write, destroy and detach must work and the module must unload.
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
snap_loop dev 64M
snap_loop stdev 64M
sectors=$(blockdev --getsz "$stdev")
dm create faulty --table "0 $sectors linear $stdev 0" && dm mknodes faulty || fail "dm-linear"
on_exit dm remove --retry faulty
fill_random "$dev" || fail "fill"

snap_create id /dev/mapper/faulty 64M "$dev"
snap_take "$id"
img=$(image_of "$dev")
step "copy-on-write works while the storage does"
dd if=/dev/urandom of="$dev" bs=1M count=4 oflag=direct status=none || fail "write before the fault"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "an error before the fault"

step "the storage fails every I/O from now on"
dm suspend faulty && dm reload faulty --table "0 $sectors error" && dm resume faulty ||
	fail "switch the storage to the error target"
head -c 16M /dev/urandom >"$w/pattern"
dd if="$w/pattern" of="$dev" bs=1M seek=32 oflag=direct status=none ||
	fail "a write to the original failed with the storage broken"

step "the snapshot reports it"
out=$($BLKSNAP snapshot_waitevent -i "$id" -t 10000) || fail "waitevent"
echo "$out"
grep -qx "event=corrupted" <<<"$out" || fail "no corrupted event"
grep -qx "err_code=5" <<<"$out" || fail "the event does not carry EIO"
[ "$(snap_info "$dev" error_code)" = -5 ] || fail "SNAPSHOTINFO is not -5"
if dd if="$img" of=/dev/null bs=1M count=1 skip=32 iflag=direct status=none 2>/dev/null; then
	fail "the image of a broken snapshot still reads"
fi

step "the original kept every write; destroy, detach and unload work"
cmp <(dd if="$dev" bs=1M skip=32 count=16 iflag=direct status=none) "$w/pattern" ||
	fail "the original lost a write"
snap_destroy "$id"
$BLKSNAP detach -d "$dev" || fail "detach"
rmmod blksnap || fail "rmmod"
exit 0
