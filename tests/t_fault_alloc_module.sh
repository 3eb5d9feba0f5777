#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Allocation failures in the module's own work, in whatever thread runs it:
# failslab and fail_page_alloc fail a share of the allocations made with
# the module's code on the stack (the stack trace filter, require-start and
# require-end: the module's address range), while writes are copied on
# write by the workers, images are read and snapshots are taken and
# destroyed. Rounds of 1%, 10% and 100%. Each write must succeed and be on
# the original; each image read that succeeds, and the whole image while
# the snapshot reports no error, must be the content at the take.
. tests/lib.sh
. tests/snap_lib.sh
faults=/sys/kernel/debug
mountpoint -q $faults || mount -t debugfs none $faults || fail "mount debugfs"
[ -e $faults/failslab/require-start ] ||
	fail "the kernel has no fault injection stack trace filter"
load_module diff_storage_minimum=2048
read -r _ size _ _ _ start _ < <(grep '^blksnap ' /proc/modules)
[ "${start:-0x0}" != 0x0000000000000000 ] || fail "no module address in /proc/modules"
# Addresses above 2^63: bash's arithmetic wraps, printf gives them back.
end=$(printf '0x%x' $((start + size)))
echo "module at $start, $size bytes"

knobs="probability interval times verbose ignore-gfp-wait require-start require-end stacktrace-depth task-filter"
for f in failslab fail_page_alloc; do
	for knob in $knobs; do
		old=$(cat $faults/$f/$knob)
		on_exit "echo $old >$faults/$f/$knob"
	done
	echo N >$faults/$f/ignore-gfp-wait
	echo 0 >$faults/$f/verbose
	echo N >$faults/$f/task-filter
	echo 1 >$faults/$f/interval
	echo 32 >$faults/$f/stacktrace-depth
	echo $start >$faults/$f/require-start
	echo $end >$faults/$f/require-end
done
old=$(cat $faults/fail_page_alloc/min-order)
on_exit "echo $old >$faults/fail_page_alloc/min-order"
echo 0 >$faults/fail_page_alloc/min-order

# inject PERCENT: fail that share of the module's allocations (at most
# 100000); inject 0 stops, adding how many failed to $failed.
failed=0
inject() {
	local f
	for f in failslab fail_page_alloc; do
		echo "$1" >$faults/$f/probability
		if [ "$1" = 0 ]; then
			failed=$((failed + 100000 - $(cat $faults/$f/times)))
		else
			echo 100000 >$faults/$f/times
		fi
	done
}

snap_workdir w
snap_loop dev 64M
fill_random "$dev" || fail "fill"
for p in 1 10 100; do
	step "round with $p% of the module's allocations failing"
	dd if="$dev" of="$w/before" bs=1M iflag=direct status=none || fail "copy"
	: >"$w/storage$p"
	inject "$p"
	out=$($BLKSNAP snapshot_create -f "$w/storage$p" -l 64M -d "$dev" 2>&1)
	rc=$?
	id=$(grep -oE "$SNAP_ID_RE" <<<"$out" | head -n 1)
	taken=0
	if [ $rc = 0 ]; then
		$BLKSNAP snapshot_take -i "$id" 2>"$w/err" && taken=1 || echo "take: $(cat "$w/err")"
	fi
	if [ $taken = 0 ]; then
		# The requests failed cleanly; try again without faults.
		echo "create or take failed: $out"
		inject 0
		if [ $rc = 0 ]; then
			$BLKSNAP snapshot_destroy -i "$id" || fail "destroy after a failed take"
		elif [ -n "$id" ] && $BLKSNAP snapshot_collect | grep -q "$id"; then
			# A failed snapshot_create destroys what it created.
			fail "snapshot $id left behind by a failed create"
		fi
		: >"$w/storage$p.2"
		out=$($BLKSNAP snapshot_create -f "$w/storage$p.2" -l 64M -d "$dev") || fail "create without faults"
		id=$(grep -oE "$SNAP_ID_RE" <<<"$out" | head -n 1)
		$BLKSNAP snapshot_take -i "$id" || fail "take without faults"
		inject "$p"
	fi
	img=$(image_of "$dev")
	for _ in $(seq 1 50); do [ -b "$img" ] && break; sleep 0.1; done
	head -c 16M /dev/urandom >"$w/pattern"
	for i in $(seq 0 15); do
		dd if="$w/pattern" of="$dev" bs=1M skip="$i" seek=$((i * 3)) count=1 \
			oflag=direct status=none || fail "write $i failed"
		if dd if="$img" of="$w/part" bs=1M skip=$((i * 3)) count=2 iflag=direct status=none 2>/dev/null; then
			cmp "$w/part" <(dd if="$w/before" bs=1M skip=$((i * 3)) count=2 status=none) ||
				fail "an image read returned data that is not the content at the take"
		fi
	done
	inject 0
	code=$(snap_info "$dev" error_code)
	echo "$failed allocations failed so far; SNAPSHOTINFO error_code $code"
	for i in $(seq 0 15); do
		cmp <(dd if="$dev" bs=1M skip=$((i * 3)) count=1 iflag=direct status=none) \
			<(dd if="$w/pattern" bs=1M skip="$i" count=1 status=none) || fail "the original lost write $i"
	done
	if [ "$code" = 0 ]; then
		cmp "$img" "$w/before" || fail "the image of an unbroken snapshot is not the content at the take"
	elif dd if="$img" of=/dev/null bs=1M count=1 iflag=direct status=none 2>/dev/null; then
		fail "the image of a broken snapshot still reads"
	fi
	$BLKSNAP snapshot_destroy -i "$id" || fail "destroy"
	rm -f "$w/storage$p" "$w/storage$p.2"
done
echo "$failed allocations failed in all"
[ "$failed" -gt 0 ] || fail "no allocation failed: the filter does not match the module"
$BLKSNAP detach -d "$dev" || fail "detach"
rmmod blksnap || fail "rmmod"
exit 0
