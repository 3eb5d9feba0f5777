#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A difference storage whose writes reach a member of its own snapshot is
# refused (EINVAL): copy-on-write would store into that member, and every
# store would need copy-on-write of its own (until the limit, or waiting on
# itself). The storage reaches the member when it is a partition of it, a
# file on device mapper over it, on an ext4 whose external journal it is,
# or on a btrfs that has it among its devices (at add, and at take after a
# "btrfs device add"). A storage that does not reach it (btrfs on another
# device) is accepted and works.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w

step "storage: a partition of the member disk"
snap_loop disk 64M -P
printf 'label: gpt\n,32M\n,\n' | sfdisk -q "$disk" || fail "sfdisk"
partx -u "$disk" 2>/dev/null
for _ in $(seq 1 50); do [ -b "${disk}p2" ] && break; sleep 0.1; done
[ -b "${disk}p2" ] || fail "no ${disk}p2"
$BLKSNAP attach -d "$disk" || fail "attach $disk"
on_exit $BLKSNAP detach -d "$disk"
expect_errno EINVAL $BLKSNAP snapshot_create -f "${disk}p2" -l 32M -d "$disk"

step "storage: a file on ext4 on dm-linear over the member"
snap_loop member 160M
snap_loop other 160M
$BLKSNAP attach -d "$member" || fail "attach $member"
on_exit $BLKSNAP detach -d "$member"
dm create stacked --table "0 $(blockdev --getsz "$member") linear $member 0" &&
	dm mknodes stacked || fail "dm-linear over $member"
on_exit dm remove --retry stacked
mkfs.ext4 -q /dev/mapper/stacked || fail "mkfs.ext4"
mkdir "$w/ext4"
mount /dev/mapper/stacked "$w/ext4" || fail "mount"
on_exit umount "$w/ext4"
expect_errno EINVAL $BLKSNAP snapshot_create -f "$w/ext4" -l 32M -d "$member"
umount "$w/ext4" || fail "umount ext4"
dm remove --retry stacked || fail "dmsetup remove"

step "storage: a file on ext4 whose external journal is the member"
mke2fs -q -F -O journal_dev -b 4096 "$member" || fail "mke2fs journal_dev"
mkfs.ext4 -q -F -b 4096 -J device="$member" "$other" || fail "mkfs.ext4 -J device"
mount "$other" "$w/ext4" || fail "mount with the external journal"
expect_errno EINVAL $BLKSNAP snapshot_create -f "$w/ext4" -l 32M -d "$member"
umount "$w/ext4" || fail "umount ext4"

step "storage: a file on btrfs over the member and another device"
mkfs.btrfs -q -f -d single -m single "$member" "$other" >/dev/null || fail "mkfs.btrfs"
mkdir "$w/btrfs"
# No udev in the VM: btrfs learns its devices from a scan.
btrfs device scan "$member" "$other" >/dev/null || fail "btrfs device scan"
mount -t btrfs "$other" "$w/btrfs" || fail "mount btrfs"
expect_errno EINVAL $BLKSNAP snapshot_create -f "$w/btrfs" -l 32M -d "$member"
umount "$w/btrfs" || fail "umount btrfs"

step "storage: btrfs on another device, accepted; refused at take once the member joins it"
mkfs.btrfs -q -f "$other" >/dev/null || fail "mkfs.btrfs $other"
wipefs -q -a "$member" || fail "wipefs $member"
btrfs device scan --forget >/dev/null 2>&1
btrfs device scan "$other" >/dev/null || fail "btrfs device scan"
mount -t btrfs "$other" "$w/btrfs" || fail "mount btrfs"
on_exit umount "$w/btrfs"
fill_random "$member" || fail "fill $member"
dev_sum "$member" >"$w/before"
snap_create id "$w/btrfs" 64M "$member"
snap_take "$id"
dd if=/dev/urandom of="$member" bs=1M count=32 oflag=direct status=none || fail "rewrite $member"
[ "$(dev_sum "$(image_of "$member")")" = "$(cat "$w/before")" ] ||
	fail "the image is not the content at the take"
snap_destroy "$id"
snap_create id2 "$w/btrfs" 64M "$member"
btrfs -q device add -f "$member" "$w/btrfs" || fail "btrfs device add $member"
expect_errno EINVAL $BLKSNAP snapshot_take -i "$id2"
snap_destroy "$id2"
exit 0
