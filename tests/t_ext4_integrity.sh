# SPDX-License-Identifier: GPL-2.0
# An ext4 file system on a filtered device reads back exactly what was
# written, through the page cache and after a remount, and after detach.
. tests/lib.sh
load_module
dev=$(new_loop 256M)
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
mkfs.ext4 -q -F "$dev" || fail "mkfs"
mnt=/tmp/mnt
mkdir -p "$mnt"
mount "$dev" "$mnt" || fail "mount"
on_exit umount "$mnt"
for i in $(seq 1 20); do
	head -c $((i * 997 * 13)) /dev/urandom >"$mnt/file$i"
done
dd if=/dev/urandom of="$mnt/big" bs=1M count=64 status=none
(cd "$mnt" && sha256sum file* big) >/tmp/sums
sync
echo 3 >/proc/sys/vm/drop_caches
(cd "$mnt" && sha256sum -c --quiet /tmp/sums) || fail "checksums after drop_caches"
umount "$mnt" || fail "umount"
mount "$dev" "$mnt" || fail "remount"
(cd "$mnt" && sha256sum -c --quiet /tmp/sums) || fail "checksums after remount"
umount "$mnt"
fsck.ext4 -fn "$dev" >/dev/null || fail "fsck"
$BLKSNAP detach -d "$dev" || fail "detach"
mount -o ro "$dev" "$mnt" || fail "mount after detach"
(cd "$mnt" && sha256sum -c --quiet /tmp/sums) || fail "checksums after detach"
exit 0
