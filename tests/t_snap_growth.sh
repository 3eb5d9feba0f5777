# SPDX-License-Identifier: GPL-2.0
# The difference storage grows on demand: a storage file that starts empty,
# with diff_storage_minimum at 4 MiB, takes 40 MiB of copy-on-write without
# the snapshot failing, and the image stays the content at the take.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=8192
snap_workdir w
snap_loop dev 64M
fill_random "$dev" || fail "fill"
dd if="$dev" of="$w/before" bs=1M iflag=direct status=none || fail "copy before"
: >"$w/diff"

# allocated FILE: bytes allocated to FILE.
allocated() { echo $(($(stat -c '%b * %B' "$1"))); }

snap_create id "$w/diff" 256M "$dev"
snap_take "$id"
echo "storage after the take: $(allocated "$w/diff") bytes allocated, size $(stat -c %s "$w/diff")"
for i in $(seq 0 9); do
	dd if=/dev/urandom of="$dev" bs=1M seek=$((12 + i * 4)) count=4 oflag=direct status=none ||
		fail "overwrite at $((12 + i * 4)) MiB"
	echo "after $(((i + 1) * 4)) MiB: $(allocated "$w/diff") bytes allocated"
done
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot failed while its storage grew"
cmp <(dd if="$(image_of "$dev")" bs=1M iflag=direct status=none) "$w/before" ||
	fail "the image is not the content at the take"
for _ in $(seq 1 50); do
	[ "$(allocated "$w/diff")" -ge $((40 << 20)) ] && break
	sleep 0.1
done
size=$(allocated "$w/diff")
echo "storage at the end: $size bytes allocated, size $(stat -c %s "$w/diff")"
[ "$size" -gt $((4 << 20)) ] || fail "the storage did not grow beyond diff_storage_minimum"
[ "$size" -ge $((40 << 20)) ] || fail "the storage holds less than the 40 MiB copied"
[ "$size" -le $((256 << 20)) ] || fail "the storage grew beyond its limit"
snap_destroy "$id"
exit 0
