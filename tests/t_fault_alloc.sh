#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Allocation failures (failslab, fail_page_alloc) in every request a caller
# makes: tests/fault_alloc.py fails the 1st, 2nd, 3rd... allocation of each
# request in turn through /proc/thread-self/fail-nth, and checks that each
# fails cleanly and changes nothing, or works; writes are kept and images
# stay exact. Afterwards the module unloads (nothing holds it).
. tests/lib.sh
. tests/snap_lib.sh
faults=/sys/kernel/debug
mountpoint -q $faults || mount -t debugfs none $faults || fail "mount debugfs"
[ -e /proc/self/fail-nth ] && [ -d $faults/failslab ] && [ -d $faults/fail_page_alloc ] ||
	fail "the kernel has no failslab, fail_page_alloc or fail-nth"
# Sleeping allocations (GFP_KERNEL) and order-0 pages are the ones that
# matter here; the faults are quiet (the console is slow) and only fail-nth
# injects them (probability 0).
for f in failslab fail_page_alloc; do
	for knob in ignore-gfp-wait verbose probability; do
		old=$(cat $faults/$f/$knob)
		on_exit "echo $old >$faults/$f/$knob"
	done
	echo N >$faults/$f/ignore-gfp-wait
	echo 0 >$faults/$f/verbose
	echo 0 >$faults/$f/probability
done
old=$(cat $faults/fail_page_alloc/min-order)
on_exit "echo $old >$faults/fail_page_alloc/min-order"
echo 0 >$faults/fail_page_alloc/min-order

load_module diff_storage_minimum=2048
snap_workdir w
snap_loop dev 64M
fill_random "$dev" || fail "fill"
python3 tests/fault_alloc.py --dir "$w" "$dev" || fail "allocation failures"
rmmod blksnap || fail "the module does not unload"
exit 0
