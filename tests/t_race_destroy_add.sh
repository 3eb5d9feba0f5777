#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# SNAPSHOTADD and TAKE that found a snapshot just before it was destroyed
# must fail, not bind a device to the dead snapshot (it could never join
# another: EBUSY) nor start copy-on-write into storage nobody can free (the
# module could never be unloaded). The module's test-only delay holds them
# for 3 s between finding the snapshot and locking it.
. tests/lib.sh
. tests/snap_lib.sh
load_module
params=/sys/module/blksnap/parameters
snap_workdir w
snap_loop dev1 64M
snap_loop dev2 64M
$BLKSNAP attach -d "$dev2" || fail "attach $dev2"
on_exit $BLKSNAP detach -d "$dev2"
snap_create_file id "$w/diff1" 256M "$dev1"
echo 3000 >"$params/debug_delay_ms"
on_exit echo 0 ">$params/debug_delay_point"
echo 2 >"$params/debug_delay_point"

step "SNAPSHOTADD of $dev2, destroy meanwhile"
python3 - "$dev2" "$id" "$w/adding" <<'PY' &
import sys, uuid
sys.path.insert(0, "tests")
from snapshot_ioctl import Filtered
dev = Filtered(sys.argv[1])
open(sys.argv[3], "w").close()
print("SNAPSHOTADD:", dev.add(uuid.UUID(sys.argv[2]).bytes))
PY
adder=$!
# Destroy once the add is in the module, waiting to lock the snapshot.
for _ in $(seq 100); do [ -e "$w/adding" ] && break; sleep 0.05; done
sleep 0.5
$BLKSNAP snapshot_destroy -i "$id" || fail "destroy"
wait "$adder"

step "TAKE, destroy meanwhile"
snap_create_file id2 "$w/diff2" 256M "$dev1"
$BLKSNAP snapshot_take -i "$id2" >"$w/take.log" 2>&1 &
taker=$!
sleep 1
$BLKSNAP snapshot_destroy -i "$id2" || fail "destroy"
wait "$taker" && echo "the take succeeded"
cat "$w/take.log"
echo 0 >"$params/debug_delay_point"

step "nothing is left of either snapshot"
[ "$(snap_count)" = 0 ] || fail "snapshots left: $($BLKSNAP snapshot_collect)"
sleep 1
[ ! -e "$(image_of "$dev1")" ] || fail "an image of the destroyed snapshot exists"
snap_create_file id3 "$w/diff3" 256M "$dev2"
snap_destroy "$id3"
$BLKSNAP detach -d "$dev1" || fail "detach $dev1"
$BLKSNAP detach -d "$dev2" || fail "detach $dev2"
rmmod blksnap || fail "the module cannot be unloaded"
exit 0
