#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Writes held by a snapshot's copy-on-write when it is destroyed must reach
# the original before the destroy returns: otherwise they land after the
# take of the next snapshot without its copy-on-write, and its image
# changes. A first write keeps the copy-on-write worker busy for 4 s
# (dm-delay holds the copy of its chunk); a second write, to a chunk whose
# reads are fast, waits for the worker meanwhile, while the snapshot is
# destroyed and the next one taken; the image of that chunk is read before
# and after the second write lands.
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
snap_loop_stamped loop 64M 14
slow_dev dev "$loop" 16 4000
snap_create_file id "$w/diff1" 256M "$dev"
on_exit snap_destroy_all
snap_take "$id"
img=$(image_of "$dev")
cat >"$w/retake.sh" <<EOS
set -e
$BLKSNAP snapshot_destroy -i $id
: >$w/diff2
out=\$($BLKSNAP snapshot_create -f $w/diff2 -l 256M -d $dev)
id2=\$(echo "\$out" | grep -oE '$SNAP_ID_RE' | head -n 1)
$BLKSNAP snapshot_take -i \$id2
for i in \$(seq 50); do [ -b $img ] && exit 0; sleep 0.1; done
exit 1
EOS

step "write chunk 4 (slow copy), write chunk 64 (fast), destroy, create and take meanwhile"
race --fill-seed 14 \
	--lane "0 write $dev 2048 8 1" \
	--lane "0.1 write $dev 32768 8 2" \
	--lane "0.5 sh bash $w/retake.sh; 0 same c64 $img 32768 512; 4 same c64 $img 32768 512" ||
	fail "the image of the second snapshot changed after its take"
exit 0
