#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Read errors on the original while writes are being copied: the original is
# a device-mapper device whose table is switched, after the take, to
# dm-flakey with "error_reads" (every read fails, writes go through), so
# copy-on-write cannot read the old contents. The snapshot must break cleanly
# (a corrupted event with EIO, SNAPSHOTINFO -5, image reads fail), every
# write must reach the original, destroy and detach must work and the module
# must unload.
. tests/lib.sh
. tests/snap_lib.sh
# The storage grows in 1 MiB steps, far from its limit: no no_space event.
load_module diff_storage_minimum=2048
snap_workdir w
snap_loop disk 64M
sectors=$(blockdev --getsz "$disk")
name=orig$RANDOM
dm create "$name" --table "0 $sectors linear $disk 0" && dm mknodes "$name" || fail "dm-linear"
on_exit dm remove --retry "$name"
dev=/dev/mapper/$name
fill_random "$dev" || fail "fill"

snap_create_file id "$w/storage" 64M "$dev"
snap_take "$id"
step "copy-on-write works while the original reads"
dd if=/dev/urandom of="$dev" bs=1M count=4 oflag=direct status=none || fail "write before the fault"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "an error before the fault"

step "every read of the original fails from now on"
dm suspend "$name" && dm reload "$name" --table "0 $sectors flakey $disk 0 0 1 1 error_reads" &&
	dm resume "$name" || fail "switch the original to dm-flakey"
if dd if="$dev" of=/dev/null bs=4K count=1 skip=4096 iflag=direct status=none 2>/dev/null; then
	fail "dm-flakey let a read of the original through"
fi
head -c 16M /dev/urandom >"$w/pattern"
dd if="$w/pattern" of="$dev" bs=1M seek=32 oflag=direct status=none ||
	fail "a write to the original failed while copy-on-write could not read"

step "the snapshot reports it"
# The image must not serve even the first 4 MiB, copied before the fault.
expect_broken "$id" "$dev" 5

step "the original kept every write; destroy, detach and unload work"
dm suspend "$name" && dm reload "$name" --table "0 $sectors linear $disk 0" &&
	dm resume "$name" || fail "switch the original back to dm-linear"
cmp <(dd if="$dev" bs=1M skip=32 count=16 iflag=direct status=none) "$w/pattern" ||
	fail "the original lost a write"
snap_destroy "$id"
$BLKSNAP detach -d "$dev" || fail "detach"
rmmod blksnap || fail "rmmod"
exit 0
