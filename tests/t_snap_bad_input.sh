# SPDX-License-Identifier: GPL-2.0
# Snapshot requests with bad pointers, unknown ids, bad sizes and in the
# wrong order fail with an errno of the interface, on the control device and
# through BLKFILTER_CTL, and so do the CLI's; nothing is left behind.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop d1 32M
snap_loop d2 32M
snap_loop st 64M
snap_loop fsd 64M
mkfs.ext4 -q -F "$fsd" || fail "mkfs"
mkdir "$w/fs" "$w/storage"
mount "$fsd" "$w/fs" || fail "mount"
on_exit umount "$w/fs"
for d in "$d1" "$d2" "$st" "$fsd"; do
	$BLKSNAP attach -d "$d" || fail "attach $d"
	on_exit $BLKSNAP detach -d "$d"
done
on_exit snap_destroy_all

python3 tests/snapshot_ioctl.py --dir "$w/storage" --dev "$d1" --dev2 "$d2" \
	--storage-bdev "$st" --fs-dev "$fsd" --fs-dir "$w/fs" || fail "raw ioctls"
[ "$(snap_count)" = 0 ] || fail "snapshots left behind"

step "the CLI names the errno"
unknown=$(python3 -c 'import uuid; print(uuid.uuid4())')
expect_errno ENODEV $BLKSNAP snapshot_destroy -i "$unknown"
expect_errno ESRCH $BLKSNAP snapshot_take -i "$unknown"
expect_errno ENOENT $BLKSNAP snapshot_create -f "$w/storage/no/such/file" -l 64M -d "$d1"
: >"$w/storage/diff"
snap_create id "$w/storage/diff" 64M "$d1"
[ "$($BLKSNAP snapshot_waitevent -i "$id" -t 10)" = result=timeout ] || fail "waitevent timeout"
expect_errno EALREADY $BLKSNAP snapshot_add -i "$id" -d "$d1"
snap_take "$id"
expect_errno EALREADY $BLKSNAP snapshot_take -i "$id"
snap_destroy "$id"
expect_errno ENODEV $BLKSNAP snapshot_destroy -i "$id"
[ "$(snap_count)" = 0 ] || fail "snapshots left behind"
[ "$(filter_of "$d1")" = blksnap ] || fail "the filter went away"
exit 0
