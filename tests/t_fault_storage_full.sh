#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The file system of the difference storage fills up before the storage
# reaches its limit: the storage file is on an 8 MiB tmpfs, its limit is
# 64 MiB, and 32 MiB of first-touch writes need copying. Growing fails with
# ENOSPC: the snapshot must break cleanly (a corrupted event with ENOSPC, no
# no_space event since the limit was not reached, image reads fail), every
# write must reach the original, and once the snapshot is destroyed the file
# system is released.
. tests/lib.sh
. tests/snap_lib.sh
# The storage grows in 1 MiB steps.
load_module diff_storage_minimum=2048
snap_workdir w
mkdir "$w/small"
mount -t tmpfs -o size=8M tmpfs "$w/small" || fail "mount tmpfs"
on_exit umount "$w/small"
snap_loop dev 64M
fill_random "$dev" || fail "fill"

snap_create_file id "$w/small/storage" 64M "$dev"
snap_take "$id"
write_kept "$dev" 0 32
df -k "$w/small"

step "the snapshot reports it, first (no no_space event) and once"
expect_broken "$id" "$dev" 28
out=$($BLKSNAP snapshot_waitevent -i "$id" -t 100)
grep -qx "result=timeout" <<<"$out" || fail "another event after the corrupted one: $out"

step "the file system is released"
snap_destroy "$id"
rm "$w/small/storage" || fail "remove the storage file"
umount "$w/small" || fail "the storage's file system is still busy"
$BLKSNAP detach -d "$dev" || fail "detach"
rmmod blksnap || fail "rmmod"
exit 0
