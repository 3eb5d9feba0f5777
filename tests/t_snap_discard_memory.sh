#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A discard of a whole snapshotted device (blkdiscard, fstrim, mkfs) must be
# copied on write with bounded memory: at most chunk_maximum_in_queue chunks
# wait in memory, however large the bio. The 256 MiB original is sparse (it
# reads as zeros, fast) and the difference storage is dm-zero (writes
# vanish, reads give zeros) behind dm-delay, which makes each write take
# 50 ms: storing lags behind copying (even when chunks are stored 16 in
# one write), as on a real system under load. The
# image stays all zeros and only the module's memory grows; its peak is
# read from MemAvailable while the discard runs.
. tests/lib.sh
. tests/snap_lib.sh
# 16 chunks of 256 KiB: 4 MiB.
load_module chunk_maximum_in_queue=16
snap_loop dev 256M
zero=zero$RANDOM
dm create "$zero" --table "0 $((1 << 21)) zero" && dm mknodes "$zero" || fail "dm-zero"
on_exit dm remove --retry "$zero"
storage=slowzero$RANDOM
dm create "$storage" --table "0 $((1 << 21)) delay /dev/mapper/$zero 0 0 /dev/mapper/$zero 0 50" &&
	dm mknodes "$storage" || fail "dm-delay"
on_exit dm remove --retry "$storage"
snap_create id "/dev/mapper/$storage" 1G "$dev"
snap_take "$id"
img=$(image_of "$dev")

available() {
	awk '/^MemAvailable:/ {print $2}' /proc/meminfo
}
drop_caches
before=$(available)
step "blkdiscard of the whole device, MemAvailable ${before} KiB before"
blkdiscard "$dev" &
discard=$!
low=$before
while kill -0 "$discard" 2>/dev/null; do
	now=$(available)
	[ "$now" -lt "$low" ] && low=$now
	sleep 0.05
done
wait "$discard" || fail "blkdiscard"
used=$(((before - low) / 1024))
echo "peak memory used during the discard: $used MiB"
# The chunks in memory are 4 MiB; the rest of the system moves a little.
[ "$used" -lt 48 ] || fail "copy-on-write of one discard took $used MiB"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot reports an error"
cmp -n $((256 << 20)) "$img" /dev/zero || fail "the image is not the content at the take"
exit 0
