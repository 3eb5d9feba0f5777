# SPDX-License-Identifier: GPL-2.0
# One snapshot of a mounted xfs and a mounted ext4: the images mount (xfs
# with norecovery,nouuid, then read-write to replay its log) and hold the
# files as they were at the take and check clean, while the originals keep
# every change made after it.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop d1 320M # mkfs.xfs wants at least 300 MiB
snap_loop d2 64M
: >"$w/diff"

mkfs.xfs -q -f "$d1" || fail "mkfs.xfs"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$d2" || fail "mkfs.ext4"
devs=("$d1" "$d2")
fs=(xfs ext4)
image_opts=("ro,norecovery,nouuid" "ro,noload")
for i in 0 1; do
	m=$w/m$i
	mkdir "$m" "$w/i$i"
	mount "${devs[$i]}" "$m" || fail "mount ${devs[$i]}"
	on_exit umount "$m"
	mkdir "$m/dir"
	for f in $(seq 1 12); do
		head -c $((f * 41 * 1024 + i * 777)) /dev/urandom >"$m/f$f"
	done
	head -c 6M /dev/urandom >"$m/dir/big"
	echo "${fs[$i]}" >"$m/name"
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

# check_fs FS DEV: a read-only check of the file system on DEV.
check_fs() {
	local rc=0
	case $1 in
	xfs) xfs_repair -n "$2" >"$w/check" 2>&1 || rc=$? ;;
	ext4) fsck.ext4 -fn "$2" >"$w/check" 2>&1 || rc=$? ;;
	esac
	[ $rc = 0 ] && return 0
	cat "$w/check"
	fail "check of ${1} on $2 (exit status $rc)"
}

step "the images hold the file systems as they were at the take"
for i in 0 1; do
	img=$(image_of "${devs[$i]}")
	mount -t "${fs[$i]}" -o "${image_opts[$i]}" "$img" "$w/i$i" || fail "mount ${fs[$i]} image $img"
	on_exit umount "$w/i$i"
	tree_check "$w/i$i" "$w/pre$i" "${fs[$i]} image $img"
	umount "$w/i$i" || fail "umount $img"
	if [ "${fs[$i]}" = xfs ]; then
		# A frozen xfs leaves its log for recovery: replay it into the
		# (writable) image by a read-write mount before checking.
		mount -t xfs -o nouuid "$img" "$w/i$i" || fail "read-write mount of xfs image $img"
		tree_check "$w/i$i" "$w/pre$i" "xfs image $img after log recovery"
		umount "$w/i$i" || fail "umount $img"
	fi
	check_fs "${fs[$i]}" "$img"
done

step "the originals hold the changes"
drop_caches
for i in 0 1; do
	tree_check "$w/m$i" "$w/post$i" "original ${fs[$i]} on ${devs[$i]}"
	umount "$w/m$i" || fail "umount ${devs[$i]}"
	check_fs "${fs[$i]}" "${devs[$i]}"
done
snap_destroy "$id"
exit 0
