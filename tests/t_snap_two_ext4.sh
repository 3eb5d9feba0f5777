# SPDX-License-Identifier: GPL-2.0
# One snapshot of two mounted ext4 file systems: both images mount and hold
# the files as they were at the take and fsck clean, while the originals
# keep every change made after it.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop d1 128M
snap_loop d2 128M
: >"$w/diff"

devs=("$d1" "$d2")
for i in 0 1; do
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "${devs[$i]}" ||
		fail "mkfs ${devs[$i]}"
	m=$w/m$i
	mkdir "$m" "$w/i$i"
	mount "${devs[$i]}" "$m" || fail "mount ${devs[$i]}"
	on_exit umount "$m"
	mkdir "$m/dir"
	for f in $(seq 1 12); do
		head -c $((f * 37 * 1024 + i * 513)) /dev/urandom >"$m/f$f"
	done
	head -c 6M /dev/urandom >"$m/dir/big"
	echo "device $i" >"$m/name"
done
sync
for i in 0 1; do tree_sums "$w/m$i" >"$w/pre$i"; done

snap_create id "$w/diff" 256M "$d1" "$d2"
snap_take "$id"

step "change both originals after the take"
for i in 0 1; do
	m=$w/m$i
	for f in 1 2 3; do head -c 100K /dev/urandom >"$m/f$f"; done
	dd if=/dev/urandom of="$m/dir/big" bs=64K seek=8 count=16 conv=notrunc status=none
	rm "$m/f4" "$m/f5"
	head -c 2M /dev/urandom >"$m/new"
	echo changed >>"$m/name"
done
sync
for i in 0 1; do
	tree_sums "$w/m$i" >"$w/post$i"
	! cmp -s "$w/pre$i" "$w/post$i" || fail "the changes did not change anything"
done

step "the images hold the file systems as they were at the take"
for i in 0 1; do
	img=$(image_of "${devs[$i]}")
	[ "$(snap_info "${devs[$i]}" image)" = "$img" ] || fail "snapshot_info names another image"
	[ "$(snap_info "${devs[$i]}" error_code)" = 0 ] || fail "snapshot_info reports an error"
	mount -o ro,noload "$img" "$w/i$i" || fail "mount $img"
	on_exit umount "$w/i$i"
	tree_check "$w/i$i" "$w/pre$i" "image $img"
	umount "$w/i$i" || fail "umount $img"
	fsck.ext4 -fn "$img" >"$w/fsck" 2>&1 || { cat "$w/fsck"; fail "fsck of image $img"; }
done

step "the originals hold the changes"
drop_caches
for i in 0 1; do
	tree_check "$w/m$i" "$w/post$i" "original ${devs[$i]}"
	umount "$w/m$i" || fail "umount ${devs[$i]}"
	fsck.ext4 -fn "${devs[$i]}" >"$w/fsck" 2>&1 || { cat "$w/fsck"; fail "fsck of ${devs[$i]}"; }
done
snap_destroy "$id"
for i in 0 1; do
	mount "${devs[$i]}" "$w/m$i" || fail "mount after destroy"
	tree_check "$w/m$i" "$w/post$i" "original ${devs[$i]} after destroy"
	umount "$w/m$i"
done
exit 0
