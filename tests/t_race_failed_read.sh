#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# An image read in flight on the original when the snapshot breaks must not
# succeed with what was written after the break (writes are no longer copied
# then): it fails, or returns the data of the take. dm-delay holds the read
# for 2 s; a write to another part overflows the difference storage
# meanwhile, then a write lands on the chunk being read.
. tests/lib.sh
. tests/snap_lib.sh
# The storage grows by 1 MiB up to the limit, 1 MiB: four chunks.
load_module diff_storage_minimum=2048
snap_workdir w
snap_loop_stamped loop 64M 12
slow_dev dev "$loop" 16 2000
snap_create_file id "$w/diff" 1M "$dev"
snap_take "$id"
img=$(image_of "$dev")
cat >"$w/broken.sh" <<EOS
for i in \$(seq 500); do
	e=\$($BLKSNAP snapshot_info -d $dev -f error_code)
	[ "\$e" != 0 ] && { echo "snapshot broken: error \$e"; exit 0; }
	sleep 0.02
done
echo "the snapshot did not break"; exit 1
EOS

step "image read of chunk 4 in flight; 4 MiB of writes at 20 MiB overflow the storage; write to chunk 4"
race --fill-seed 12 --eio-ok \
	--lane "0 read $img 2048 512" \
	--lane "0.2 write $dev 40960 8192 1" \
	--lane "0.3 sh bash $w/broken.sh; 0 write $dev 2064 8 2" ||
	fail "an image read succeeded with data written after the snapshot broke"
[ "$(snap_info "$dev" error_code)" != 0 ] || fail "the snapshot does not report the overflow"
step "the original holds every write"
race --fill-seed 12 --lane "0 read $dev 40960 8192 1; 0 read $dev 2064 8 2" || fail "original"
exit 0
