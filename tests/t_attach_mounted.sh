# SPDX-License-Identifier: GPL-2.0
# Attach and detach on a mounted ext4 under writes: the file system is
# frozen around the switch, nothing deadlocks, no write is lost.
. tests/lib.sh
load_module
dev=$(new_loop 256M)
mkfs.ext4 -q -F "$dev" || fail "mkfs"
mnt=/tmp/mnt
mkdir -p $mnt
mount "$dev" $mnt || fail "mount"
on_exit umount $mnt
(
	for i in $(seq 1 40); do
		head -c 1M /dev/urandom >"$mnt/f$i"
		sync "$mnt/f$i"
	done
) &
writer=$!
for _ in 1 2 3 4 5; do
	$BLKSNAP attach -d "$dev" || fail "attach while mounted"
	[ "$(filter_of "$dev")" = blksnap ] || fail "not attached"
	$BLKSNAP detach -d "$dev" || fail "detach while mounted"
done
wait $writer || fail "writer"
(cd $mnt && sha256sum f*) >/tmp/sums
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
umount $mnt || fail "umount"
mount "$dev" $mnt || fail "remount"
(cd $mnt && sha256sum -c --quiet /tmp/sums) || fail "checksums after remount"
exit 0
