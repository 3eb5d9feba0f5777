#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A write submitted before the take but held by cgroup io.max throttling
# until after it reaches the original after the take: the take must not
# miss it. Either way round is a consistent snapshot, but exactly one: the
# image must not change when the write lands, and the write must be marked
# in the change tracking table of the snapshot whose image lacks it.
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
snap_loop_stamped dev 64M 13
snap_create_file id "$w/diff1" 256M "$dev"
img=$(image_of "$dev")

cg=/sys/fs/cgroup
grep -q " $cg cgroup2 " /proc/mounts || mount -t cgroup2 none "$cg" || fail "mount cgroup2"
echo +io >"$cg/cgroup.subtree_control" || fail "enable the io controller"
mkdir -p "$cg/blksnap-slow"
on_exit rmdir "$cg/blksnap-slow"
# 1 MiB at 256 KiB/s: the write waits about 4 s in the throttle.
echo "$(dev_id "$dev") wbps=262144" >"$cg/blksnap-slow/io.max" || fail "io.max"

step "1 MiB write at chunk 4, throttled; take after 1 s; read the image before and after it lands"
(
	echo $BASHPID >"$cg/blksnap-slow/cgroup.procs" &&
	exec python3 tests/race.py --fill-seed 13 \
		--lane "0 write $dev 2048 2048 1" \
		--lane "1 sh $BLKSNAP snapshot_take -i $id; 0 read $img 2048 2048; 5 read $img 2048 2048"
) || fail "the image changed when a write throttled across the take landed"
changes=$(cbt_field "$dev" changes_number) || fail "cbtinfo"
snap_destroy "$id"

step "the write is marked as a change after snapshot $changes"
snap_create_file id2 "$w/diff2" 256M "$dev"
snap_take "$id2"
# Tracking blocks of 64 KiB: the write covers blocks 16 to 31.
cbt_expect "$dev" "16-31=>$changes"
exit 0
