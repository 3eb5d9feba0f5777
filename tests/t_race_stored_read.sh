#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# An image read of a stored chunk may go straight to the storage device,
# but not while an image write has the chunk's newer data in memory: until
# that data is stored again, the storage holds the chunk's older data.
# dm-delay holds the storage's writes for 2 s, so that the image read comes
# while the chunk waits in memory.
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
snap_loop_stamped dev 16M 21
snap_loop backing 64M
# Every write to the storage takes 2 s; reads are not delayed.
sectors=$(blockdev --getsz "$backing") || fail "size of $backing"
storage=slowstore$RANDOM
dm create "$storage" --table "0 $sectors delay $backing 0 0 $backing 0 2000" && dm mknodes "$storage" ||
	fail "dmsetup create $storage"
on_exit dm remove --retry "$storage"
snap_create id "/dev/mapper/$storage" 64M "$dev"
snap_take "$id"
img=$(image_of "$dev")

step "chunk 4 copied by a write to the original, then stored"
race --fill-seed 21 --lane "0 write $dev 2048 8 1" || fail "write to the original"
# The store started when the copy was kept; 3 s see it through.
race --fill-seed 21 --lane "3 read $img 2048 512" || fail "image read of the stored chunk"

step "image write into chunk 4; image reads while it waits to be stored again"
race --fill-seed 21 \
	--lane "0 write $img 2056 8 3" \
	--lane "0.5 read $img 2056 8 3; 0 read $img 2048 8; 0 read $img 2064 496" ||
	fail "an image read returned the chunk's data from before the image write"

step "once stored again, in its place"
race --fill-seed 21 --lane "3 read $img 2056 8 3; 0 read $img 2048 8; 0 read $img 2064 496" ||
	fail "image read after the store"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot reports an error"
race --fill-seed 21 --lane "0 read $dev 2048 8 1; 0 read $dev 2056 2040" || fail "the original"
exit 0
