#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A write in the filter during a take must be marked in the CBT table of
# the same side of the take as its copy-on-write decision: if the image of
# the take lacks it, the table of the next take marks it, or no incremental
# backup ever copies it. Nothing but the module's test-only delay reaches
# the window between marking and deciding: it holds the write in the
# filter, before the decision, for 3 s while the snapshot is taken.
. tests/lib.sh
. tests/snap_lib.sh
load_module
params=/sys/module/blksnap/parameters
snap_workdir w
snap_loop_stamped dev 64M 15
snap_create_file id "$w/diff1" 256M "$dev"
img=$(image_of "$dev")
echo 3000 >"$params/debug_delay_ms"
on_exit echo 0 ">$params/debug_delay_point"

step "write to sector 2048, held in the filter before its copy-on-write decision; take meanwhile"
race --fill-seed 15 \
	--lane "0 sh echo 1 >$params/debug_delay_point; 0 write $dev 2048 8 1" \
	--lane "0.5 sh $BLKSNAP snapshot_take -i $id; 0 sh echo 0 >$params/debug_delay_point" ||
	fail "write or take"
changes=$(cbt_field "$dev" changes_number) || fail "cbtinfo"
# Tracking blocks of 64 KiB: the write is in block 16.
if race --fill-seed 15 --lane "0 read $img 2048 8 1" >/dev/null; then
	step "the image of snapshot $changes has the write: its table marks it"
	cbt_expect "$dev" "16=$changes"
elif race --fill-seed 15 --lane "0 read $img 2048 8" >/dev/null; then
	step "the image of snapshot $changes lacks the write: the next table marks it"
	snap_destroy "$id"
	: >"$w/diff2"
	snap_create id2 "$w/diff2" 256M "$dev"
	snap_take "$id2"
	cbt_expect "$dev" "16=>$changes"
else
	fail "the image holds neither the write nor the content before it"
fi
exit 0
