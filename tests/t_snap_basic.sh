# SPDX-License-Identifier: GPL-2.0
# The simplest snapshot: a loop device with a file storage on tmpfs; the
# image keeps the content of the moment of the take while the original is
# overwritten, reads and writes of the image work, and destroy removes it.
. tests/lib.sh
load_module diff_storage_minimum=8192
dev=$(new_loop 64M)
dd if=/dev/urandom of="$dev" bs=1M count=64 oflag=direct status=none || fail "fill"
dd if="$dev" of=/tmp/before bs=1M iflag=direct status=none
touch /tmp/diff
out=$($BLKSNAP snapshot_create -f /tmp/diff -l 64M -d "$dev") || fail "create: $out"
id=$(tail -n1 <<<"$out")
on_exit $BLKSNAP detach -d "$dev"
on_exit $BLKSNAP snapshot_destroy -i "$id"
step "snapshot $id"
$BLKSNAP snapshot_info -d "$dev" || fail "info before take"
$BLKSNAP snapshot_take -i "$id" || fail "take"
$BLKSNAP snapshot_info -d "$dev" || fail "info"
image=$(printf '/dev/blksnap-%d-%d' $(dev_id "$dev" | tr : ' '))
[ -b "$image" ] || fail "no $image"
dd if=/dev/urandom of="$dev" bs=64K count=256 seek=7 oflag=direct status=none || fail "overwrite"
dd if=/dev/zero of="$dev" bs=4k count=1 seek=3 status=none conv=notrunc,fsync || fail "small write"
cmp "$image" /tmp/before || fail "image differs from the content at take"
cmp -s "$dev" /tmp/before && fail "original was not overwritten"
step "image write"
dd if=/dev/urandom of=/tmp/patch bs=4k count=3 status=none
dd if=/tmp/patch of="$image" bs=4k seek=63 oflag=direct status=none conv=notrunc || fail "image write"
dd if="$image" of=/tmp/back bs=4k skip=63 count=3 iflag=direct status=none
cmp /tmp/patch /tmp/back || fail "image write did not read back"
$BLKSNAP snapshot_collect | grep -q "$id" || fail "collect"
$BLKSNAP snapshot_destroy -i "$id" || fail "destroy"
[ -b "$image" ] && fail "image still there"
ls -ls /tmp/diff
exit 0
