# SPDX-License-Identifier: GPL-2.0
# blksnap backup of a mounted ext4: a full backup holds the files as they
# were, is sparse, and records the change tracking state; an incremental one
# copies only the changed blocks, and restoring its image onto another
# device gives the files as they were at that backup. Across a new CBT
# generation an incremental backup is refused, or done in full with
# --full-if-needed. A signal stops a backup. No snapshot is ever left.
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
img=$b/$name.img
meta=$b/$name.meta.json
size=$((256 << 20))

# field JSON NAME: a field of a JSON object.
field() {
	python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
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
full=$(field "$out" bytes_copied)
[ "$full" = $size ] || fail "a full backup copied $full bytes, not $size"
[ "$(field "$out" blocks_copied)" = "$(field "$out" blocks_total)" ] || fail "full: not all blocks"
[ "$(filter_of "$dev")" = blksnap ] || fail "backup did not attach the filter"
[ "$(field "$out" generation_id)" = "$(cbt_field "$dev" generation_id)" ] || fail "generation_id"
[ "$(field "$out" changes_number)" = "$(cbt_field "$dev" changes_number)" ] || fail "changes_number"
[ "$(field "$(cat "$meta")" kind)" = full ] || fail "metadata: $(cat "$meta")"
[ "$(stat -c %s "$img")" = $size ] || fail "image size"
allocated=$(($(stat -c %b "$img") * $(stat -c %B "$img")))
echo "image: $allocated bytes allocated"
[ $allocated -lt $((size / 2)) ] || fail "the image is not sparse"
mount -o ro,noload,loop "$img" "$w/i" || fail "mount the backup image"
on_exit umount "$w/i"
tree_check "$w/i" "$w/sums1" "full backup image"
umount "$w/i" || fail "umount the backup image"

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
incr=$(field "$out" bytes_copied)
[ "$incr" -gt 0 ] || fail "an incremental backup copied nothing"
[ $((incr * 4)) -lt "$full" ] || fail "an incremental backup copied $incr bytes of $full"
[ "$(field "$out" changes_number)" = "$(cbt_field "$dev" changes_number)" ] || fail "changes_number"
[ "$(field "$(cat "$meta")" complete)" = True ] || fail "metadata: $(cat "$meta")"

step "restore onto another device"
if o=$($BLKSNAP restore --backup "$img" -d "$dev" 2>&1); then
	fail "restore onto the mounted original succeeded"
fi
echo "$o"
grep -q mounted <<<"$o" || fail "restore onto a mounted device: no reason given"
$BLKSNAP restore --backup "$img" -d "$dev2" || fail "restore"
$BLKSNAP verify --image "$dev2" --backup "$img" || fail "verify the restored device"
mount -o ro,noload "$dev2" "$w/r" || fail "mount the restored device"
on_exit umount "$w/r"
tree_check "$w/r" "$w/sums2" "restored device"
umount "$w/r" || fail "umount the restored device"
fsck.ext4 -fn "$dev2" >"$w/fsck" 2>&1 || { cat "$w/fsck"; fail "fsck of the restored device"; }

step "a new generation: incremental refused, or full with --full-if-needed"
$BLKSNAP detach -d "$dev" || fail "detach"
cp "$meta" "$w/meta.before"
if o=$($BLKSNAP backup --incremental -d "$dev" -o "$b" -s "$w/diff" -l 256M 2>&1); then
	fail "an incremental backup across generations succeeded: $o"
fi
echo "$o"
grep -q "generation changed" <<<"$o" || fail "refused without naming the generation"
no_snapshot_left "a refused backup"
cmp -s "$meta" "$w/meta.before" || fail "a refused backup changed the metadata"
backup --incremental --full-if-needed
[ "$(field "$out" kind)" = full ] || fail "--full-if-needed: not a full backup"
[ "$(field "$out" bytes_copied)" = $size ] || fail "--full-if-needed: not everything copied"
[ "$(field "$out" generation_id)" = "$(cbt_field "$dev" generation_id)" ] || fail "generation_id"
# Not byte for byte: each freeze of the file system rewrites its superblock.
mount -o ro,noload,loop "$img" "$w/i" || fail "mount the new full backup image"
tree_check "$w/i" "$w/sums2" "new full backup image"
umount "$w/i" || fail "umount the new full backup image"

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
fi
no_snapshot_left "an interrupted backup"
exit 0
