# SPDX-License-Identifier: GPL-2.0
# The difference storage as a block device, a file on tmpfs and a directory
# (an O_TMPFILE in it): each keeps the image equal to the content at the take
# while the original is overwritten, and destroy leaves nothing behind.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 32M
snap_loop stdev 96M
mkdir "$w/dir"
mount -t tmpfs -o size=128M tmpfs "$w/dir" || fail "mount tmpfs"
on_exit umount "$w/dir"
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
fill_random "$dev" || fail "fill"
img=$(image_of "$dev")

# used_kib DIR: KiB in use on the file system of DIR.
used_kib() { df -k --output=used "$1" | tail -n 1 | tr -d ' '; }

# run_kind NAME STORAGE LIMIT
run_kind() {
	local name=$1 storage=$2 limit=$3 id
	step "storage: $name ($storage)"
	dd if="$dev" of="$w/before" bs=1M iflag=direct status=none || fail "copy before"
	snap_create id "$storage" "$limit" "$dev"
	snap_take "$id"
	# 16 MiB in the middle, single 4 KiB blocks here and there, the last chunk
	dd if=/dev/urandom of="$dev" bs=1M seek=8 count=16 oflag=direct status=none ||
		fail "$name: overwrite"
	for off in 0 3 1000 5000 7000 8191; do
		dd if=/dev/urandom of="$dev" bs=4k seek=$off count=1 oflag=direct status=none ||
			fail "$name: 4k write at block $off"
	done
	cmp -s <(dd if="$dev" bs=1M iflag=direct status=none) "$w/before" &&
		fail "$name: the original did not change"
	[ "$(snap_info "$dev" error_code)" = 0 ] || fail "$name: snapshot reports an error"
	cmp <(dd if="$img" bs=1M iflag=direct status=none) "$w/before" ||
		fail "$name: the image is not the content at the take"
	if [ "$name" = directory ]; then
		# 17.5 MiB were copied: the O_TMPFILE in there holds them.
		local used _
		for _ in $(seq 1 50); do
			used=$(used_kib "$storage")
			[ "$used" -ge 16384 ] && break
			sleep 0.1
		done
		echo "$name: $used KiB in use on the storage's tmpfs"
		[ "$used" -ge 16384 ] || fail "$name: the copied data is not in $storage"
	fi
	snap_destroy "$id"
}

run_kind "block device" "$stdev" 96M
: >"$w/file"
run_kind "file on tmpfs" "$w/file" 96M
[ "$(stat -c %s "$w/file")" -gt 0 ] || echo "note: the storage file kept no size"
rm -f "$w/file"
run_kind directory "$w/dir" 96M
ls -A "$w/dir" >"$w/left"
[ ! -s "$w/left" ] || { cat "$w/left"; fail "files left in the storage directory"; }
for _ in $(seq 1 50); do
	[ "$(used_kib "$w/dir")" -lt 1024 ] && break
	sleep 0.1
done
[ "$(used_kib "$w/dir")" -lt 1024 ] || fail "the O_TMPFILE storage still uses $(used_kib "$w/dir") KiB after destroy"
exit 0
