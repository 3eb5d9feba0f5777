# SPDX-License-Identifier: GPL-2.0
# Direct I/O to a filtered device, also concurrent with attach and detach,
# reads back exactly what was written.
. tests/lib.sh
load_module
dev=$(new_loop 128M)
head -c 64M /dev/urandom >/tmp/pattern
dd if=/tmp/pattern of="$dev" bs=1M oflag=direct status=none &
writer=$!
for _ in 1 2 3 4 5; do
	$BLKSNAP attach -d "$dev" || fail "attach during writes"
	$BLKSNAP detach -d "$dev" || fail "detach during writes"
done
wait $writer || fail "writer failed"
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
cmp <(dd if="$dev" bs=1M count=64 iflag=direct status=none) /tmp/pattern ||
	fail "direct read differs"
dd if=/tmp/pattern of="$dev" bs=4k seek=$((96 * 256)) count=4096 oflag=direct status=none
cmp <(dd if="$dev" bs=4k skip=$((96 * 256)) count=4096 iflag=direct status=none) \
	<(head -c 16M /tmp/pattern) || fail "4k writes read back differently"
exit 0
