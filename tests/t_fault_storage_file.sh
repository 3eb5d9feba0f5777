#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The storage file changed behind the module's back while the snapshot
# holds it: deleted (the module's open file keeps it: the image must stay
# exact), then truncated and written to by another process. Either the
# change is refused, or the snapshot must break (image reads fail); an image
# read may never return anything but the content at the take. The original
# keeps every write throughout.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=2048
snap_workdir w
snap_loop dev 64M
fill_random "$dev" || fail "fill"
sum_before=$(dev_sum "$dev")

step "the storage file is deleted: nothing changes"
snap_create_file id "$w/storage" 64M "$dev"
snap_take "$id"
img=$(image_of "$dev")
dd if=/dev/urandom of="$dev" bs=1M count=8 oflag=direct status=none || fail "write"
rm "$w/storage" || fail "delete"
dd if=/dev/urandom of="$dev" bs=1M seek=8 count=8 oflag=direct status=none || fail "write"
[ "$(dev_sum "$img")" = "$sum_before" ] || fail "the image changed after the storage file was deleted"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot broke after the storage file was deleted"
snap_destroy "$id"

step "the storage file is truncated and written to"
sum_before=$(dev_sum "$dev")
dd if="$dev" of="$w/before" bs=1M iflag=direct status=none || fail "copy"
storage=$w/storage2
snap_create_file id "$storage" 64M "$dev"
snap_take "$id"
dd if=/dev/urandom of="$dev" bs=1M count=8 oflag=direct status=none || fail "write"
if truncate -s 0 "$storage" 2>"$w/err"; then
	echo "truncate: allowed"
	# New copies land past the hole the truncate made.
	dd if=/dev/urandom of="$dev" bs=1M seek=16 count=8 oflag=direct status=none ||
		fail "a write failed after the truncate"
else
	echo "truncate: $(cat "$w/err")"
fi
if dd if=/dev/zero of="$storage" bs=1M count=1 conv=notrunc status=none 2>"$w/err"; then
	echo "write to the storage file: allowed"
else
	echo "write to the storage file: $(cat "$w/err")"
fi
code=$(snap_info "$dev" error_code)
echo "SNAPSHOTINFO error_code $code"
if dd if="$img" of="$w/after" bs=1M iflag=direct status=none 2>/dev/null; then
	cmp "$w/after" "$w/before" || fail "the image returns wrong data after the storage file changed"
	echo "the image is still the content at the take"
else
	echo "reading the image fails"
	[ "$code" != 0 ] || fail "image reads fail but the snapshot reports no error"
fi
write_kept "$dev" 40 4
snap_destroy "$id"
$BLKSNAP detach -d "$dev" || fail "detach"
rmmod blksnap || fail "rmmod"
exit 0
