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
step "copy-on-write works while the storage does"
dd if=/dev/urandom of="$dev" bs=1M count=4 oflag=direct status=none || fail "write before the fault"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "an error before the fault"

step "the storage fails every I/O from now on"
dm suspend faulty && dm reload faulty --table "0 $sectors error" && dm resume faulty ||
	fail "switch the storage to the error target"
write_kept "$dev" 32 16

step "the snapshot reports it"
expect_broken "$id" "$dev" 5

step "destroy, detach and unload work"
snap_destroy "$id"
$BLKSNAP detach -d "$dev" || fail "detach"
rmmod blksnap || fail "rmmod"
exit 0
