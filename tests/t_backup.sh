# SPDX-License-Identifier: GPL-2.0
# blksnap backup of a mounted ext4: a full backup is restore point 1, holds
# the files as they were (read by qemu-img too), is sparse, and records the
# change tracking state; an incremental one, point 2, stores only the
# changed blocks on top of point 1, and restoring it onto another device
# gives the files as they were at that backup. Across a new CBT generation
# an incremental backup is refused, done by checksums with
# --checksum-if-needed, or in full with --full-if-needed. A signal stops a
# backup and adds no point. No snapshot is ever left.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 256M
snap_loop dev2 256M
# backup attaches the filter itself and leaves it attached for the next one.
on_exit $BLKSNAP detach -d "$dev"
on_exit snap_destroy_all
: >"$w/diff"
b=$w/backups
name=$(basename "$dev")
size=$((256 << 20))

# point ID: the image of restore point ID.
point() {
	echo "$b/$name.$1.qcow2"
}

# mount_point ID: mount restore point ID, converted to a raw image by
# qemu-img (no blksnap), read-only on $w/i.
mount_point() {
	qemu-img convert -O raw "$(point "$1")" "$w/raw" || fail "qemu-img convert point $1"
	mount -o ro,noload,loop "$w/raw" "$w/i" || fail "mount point $1"
}

# unmount_point
unmount_point() {
	umount "$w/i" || fail "umount the point"
	rm -f "$w/raw"
}

# backup ARGS...: run blksnap backup of $dev to $b with --json, print its
# output, and set $out to it; no snapshot may be left.
backup() {
	out=$($BLKSNAP --json backup -d "$dev" -o "$b" -s "$w/diff" -l 256M "$@") ||
		fail "backup $*"
	echo "$out"
	[ "$(snap_count)" = 0 ] || fail "backup $* left a snapshot"
}

# no_snapshot_left: after a backup that failed.
no_snapshot_left() {
	[ "$(snap_count)" = 0 ] || fail "$1 left a snapshot"
}

mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev" || fail "mkfs"
mkdir "$w/m" "$w/i" "$w/r"
mount "$dev" "$w/m" || fail "mount"
on_exit umount "$w/m"
mkdir "$w/m/dir"
for f in $(seq 1 12); do head -c $((f * 61 * 1024)) /dev/urandom >"$w/m/f$f"; done
head -c 8M /dev/urandom >"$w/m/dir/big"
sync
tree_sums "$w/m" >"$w/sums1"

step "full backup"
backup
[ "$(field "$out" kind)" = full ] || fail "not a full backup"
[ "$(field "$out" id)" = 1 ] || fail "the first point is not 1"
full=$(field "$out" bytes_read)
[ "$full" = $size ] || fail "a full backup read $full bytes, not $size"
[ "$(filter_of "$dev")" = blksnap ] || fail "backup did not attach the filter"
[ "$(field "$out" generation_id)" = "$(cbt_field "$dev" generation_id)" ] || fail "generation_id"
[ "$(field "$out" changes_number)" = "$(cbt_field "$dev" changes_number)" ] || fail "changes_number"
[ "$(field "$(cat "$b/$name.1.json")" kind)" = full ] || fail "metadata: $(cat "$b/$name.1.json")"
qemu-img check "$(point 1)" || fail "qemu-img check of point 1"
[ "$(qemu-img info --output=json "$(point 1)" | field "$(cat)" virtual-size)" = $size ] ||
	fail "point 1's virtual size"
allocated=$(($(stat -c %b "$(point 1)") * $(stat -c %B "$(point 1)")))
echo "point 1: $allocated bytes allocated"
[ $allocated -lt $((size / 2)) ] || fail "the image is not sparse"
mount_point 1
on_exit umount "$w/i"
tree_check "$w/i" "$w/sums1" "full backup image"
unmount_point

step "change about 1% of the device"
for f in 1 2 3; do head -c 300K /dev/urandom >"$w/m/f$f"; done
dd if=/dev/urandom of="$w/m/dir/big" bs=64K seek=16 count=8 conv=notrunc status=none
head -c 1M /dev/urandom >"$w/m/new"
rm "$w/m/f4"
sync
tree_sums "$w/m" >"$w/sums2"
! cmp -s "$w/sums1" "$w/sums2" || fail "the changes changed nothing"

step "incremental backup"
backup --incremental
[ "$(field "$out" kind)" = incremental ] || fail "not an incremental backup"
[ "$(field "$out" id)" = 2 ] || fail "the second point is not 2"
incr=$(field "$out" bytes_read)
[ "$incr" -gt 0 ] || fail "an incremental backup copied nothing"
[ $((incr * 4)) -lt "$full" ] || fail "an incremental backup copied $incr bytes of $full"
[ "$(field "$out" changes_number)" = "$(cbt_field "$dev" changes_number)" ] || fail "changes_number"
$BLKSNAP backup list -o "$b" || fail "backup list"
[ "$($BLKSNAP --json backup list -o "$b" | python3 -c 'import json,sys; print([(p["id"], p["kind"], p["base"]) for p in json.load(sys.stdin)])')" = \
	"[(1, 'full', None), (2, 'incremental', 1)]" ] || fail "the points listed"
[ "$(qemu-img info --output=json "$(point 2)" | field "$(cat)" backing-filename)" = "$name.1.qcow2" ] ||
	fail "point 2 is not built on point 1"
# Both points still read as they were.
mount_point 1
tree_check "$w/i" "$w/sums1" "point 1 after point 2"
unmount_point
mount_point 2
tree_check "$w/i" "$w/sums2" "point 2"
unmount_point
for id in 1 2; do
	$BLKSNAP verify --backup "$b/$name" --point $id || fail "verify point $id"
done

step "restore onto another device"
if o=$($BLKSNAP restore --backup "$b/$name" -d "$dev" 2>&1); then
	fail "restore onto the mounted original succeeded"
fi
echo "$o"
grep -q mounted <<<"$o" || fail "restore onto a mounted device: no reason given"
$BLKSNAP restore --backup "$b/$name" -d "$dev2" || fail "restore"
$BLKSNAP verify --image "$dev2" --backup "$b/$name" --point 2 || fail "verify the restored device"
qemu-img compare -f raw -F qcow2 "$dev2" "$(point 2)" || fail "qemu-img compare"
mount -o ro,noload "$dev2" "$w/r" || fail "mount the restored device"
on_exit umount "$w/r"
tree_check "$w/r" "$w/sums2" "restored device"
umount "$w/r" || fail "umount the restored device"
fsck.ext4 -fn "$dev2" >"$w/fsck" 2>&1 || { cat "$w/fsck"; fail "fsck of the restored device"; }

step "a new generation: incremental refused, by checksums, or in full"
$BLKSNAP detach -d "$dev" || fail "detach"
ls -l "$b" >"$w/ls.before"
if o=$($BLKSNAP backup --incremental -d "$dev" -o "$b" -s "$w/diff" -l 256M 2>&1); then
	fail "an incremental backup across generations succeeded: $o"
fi
echo "$o"
grep -q "generation changed" <<<"$o" || fail "refused without naming the generation"
no_snapshot_left "a refused backup"
ls -l "$b" | cmp -s - "$w/ls.before" || fail "a refused backup changed the backup directory"
echo "a change after the new generation" >"$w/m/dir/after"
sync
tree_sums "$w/m" >"$w/sums3"
backup --incremental --checksum-if-needed
[ "$(field "$out" kind)" = checksum ] || fail "--checksum-if-needed: not a checksum backup"
[ "$(field "$out" bytes_read)" = $size ] || fail "a checksum backup did not read everything"
stored=$(field "$out" bytes_stored)
[ "$stored" -gt 0 ] && [ $((stored * 16)) -lt $size ] || fail "a checksum backup stored $stored bytes"
mount_point 3
tree_check "$w/i" "$w/sums3" "checksum backup point"
unmount_point
$BLKSNAP verify --backup "$b/$name" || fail "verify the checksum point"
$BLKSNAP detach -d "$dev" || fail "detach"
backup --incremental --full-if-needed
[ "$(field "$out" kind)" = full ] || fail "--full-if-needed: not a full backup"
[ "$(field "$out" bytes_read)" = $size ] || fail "--full-if-needed: not everything read"
[ "$(field "$out" generation_id)" = "$(cbt_field "$dev" generation_id)" ] || fail "generation_id"
# Not byte for byte: each freeze of the file system rewrites its superblock.
mount_point 4
tree_check "$w/i" "$w/sums3" "new full backup image"
unmount_point

step "SIGINT stops a backup and destroys its snapshot"
$BLKSNAP backup -d "$dev" -o "$w/b2" -s "$w/diff" -l 256M >"$w/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	[ "$(snap_count)" = 1 ] && break
	sleep 0.05
done
kill -INT $pid 2>/dev/null
if wait $pid; then
	echo "note: the backup finished before SIGINT"
else
	cat "$w/int.out"
	grep -q interrupted "$w/int.out" || fail "the backup did not stop on SIGINT"
	! ls "$w/b2"/*.partial 2>/dev/null || fail "an interrupted backup left a partial image"
	! ls "$w/b2"/*.json 2>/dev/null || fail "an interrupted backup added a point"
fi
no_snapshot_left "an interrupted backup"
exit 0
