# SPDX-License-Identifier: GPL-2.0
# Restore points of a device (BLKSNAP_BACKUP_MIB, 256 MiB by default; the
# figures in the README are of 1024): a full backup and five incrementals,
# each after about 1% of the device was rewritten; every point restores
# byte for byte to the device's content at its backup and matches its
# checksums, also as read by qemu-img. A checksum incremental after a new
# generation reads everything and stores only what changed. Prune keeps what
# it promised, and the points kept still restore exactly. Prints the bytes
# read, stored and the space of each point, and the seconds each step took.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
size=$((${BLKSNAP_BACKUP_MIB:-256} << 20))
snap_loop dev $size
snap_loop dev2 $size
on_exit $BLKSNAP detach -d "$dev"
on_exit snap_destroy_all
: >"$w/diff"
b=$w/backups
name=$(basename "$dev")
block=65536

# change SEED: rewrite 1% of the device, in random 64 KiB blocks (direct
# I/O), and print how many bytes.
change() {
	python3 - "$dev" "$1" $size $block <<'EOF'
import mmap, os, random, sys
dev, seed, size, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
count = size // 100 // block
for i in rng.sample(range(size // block), count):
    buf[:] = rng.randbytes(block)
    os.pwritev(fd, [buf], i * block)
os.fsync(fd)
os.close(fd)
print(count * block)
EOF
}

# backup ARGS...: back up $dev to $b, print the report, set $out to it.
backup() {
	out=$($BLKSNAP --json backup -d "$dev" -o "$b" -s "$w/diff" -l 256M "$@") || fail "backup $*"
	echo "$out"
	[ "$(snap_count)" = 0 ] || fail "backup $* left a snapshot"
}

# content DEV: a digest of all of DEV (md5: several times faster than
# sha256 in the emulated guest, and enough to tell a wrong restore).
content() {
	dd if="$1" bs=1M iflag=direct status=none | md5sum | cut -d' ' -f1
}

# report: one line per point, from the last backup's report and its space.
report() {
	local id kind read stored space
	id=$(field "$out" id)
	kind=$(field "$out" kind)
	read=$(field "$out" bytes_read)
	stored=$(field "$out" bytes_stored)
	space=$(du -B1 -c "$b/$name.$id".* | tail -1 | cut -f1)
	printf '# point %d %-11s changed %9d read %10d stored %9d space %9d\n' \
		"$id" "$kind" "${changed:-0}" "$read" "$stored" "$space" | tee -a "$w/table"
}

step "a $((size >> 20)) MiB device: a quarter of it data, the rest never written"
dd if=/dev/urandom of="$dev" bs=1M count=$((size >> 22)) oflag=direct status=none || fail "fill"
backup
[ "$(field "$out" kind)" = full ] || fail "not a full backup"
report
content "$dev" >"$w/sum.1"

for id in 2 3 4 5 6; do
	step "point $id: 1% of the device rewritten"
	changed=$(change $id) || fail "change"
	backup --incremental
	[ "$(field "$out" kind)" = incremental ] || fail "point $id is not incremental"
	[ "$(field "$out" id)" = $id ] || fail "point $id numbered $(field "$out" id)"
	report
	stored=$(field "$out" bytes_stored)
	# Whole 64 KiB blocks rewritten: the point stores them, and no more.
	[ "$stored" = "$changed" ] || fail "point $id stored $stored bytes, $changed changed"
	content "$dev" >"$w/sum.$id"
done
changed=

echo "# backups: ${SECONDS}s"
step "every point restores as the device was, and matches its checksums"
for id in 1 2 3 4 5 6; do
	$BLKSNAP verify --backup "$b/$name" --point $id || fail "verify point $id"
	$BLKSNAP restore --backup "$b/$name" --point $id -d "$dev2" || fail "restore point $id"
	[ "$(content "$dev2")" = "$(cat "$w/sum.$id")" ] || fail "point $id restored differs"
done
# qemu-img reads the chain alone: the last point equals the device.
qemu-img compare -f raw -F qcow2 "$dev" "$b/$name.6.qcow2" || fail "qemu-img compare of point 6"
qemu-img check "$b/$name.6.qcow2" || fail "qemu-img check of point 6"
$BLKSNAP backup list -o "$b" || fail "backup list"
echo "# restores: ${SECONDS}s"

step "a new generation: a checksum incremental stores only the changed blocks"
$BLKSNAP detach -d "$dev" || fail "detach"
changed=$(change 7) || fail "change"
backup --incremental --checksum-if-needed
[ "$(field "$out" kind)" = checksum ] || fail "not a checksum backup"
[ "$(field "$out" bytes_read)" = $size ] || fail "a checksum backup did not read the whole device"
[ "$(field "$out" bytes_stored)" = "$changed" ] || fail "a checksum backup stored other than what changed"
report
changed=
content "$dev" >"$w/sum.7"
$BLKSNAP restore --backup "$b/$name" -d "$dev2" || fail "restore point 7"
[ "$(content "$dev2")" = "$(cat "$w/sum.7")" ] || fail "point 7 restored differs"

step "prune --keep-last 3: points 5, 6, 7 kept and exact, 1 to 4 gone"
$BLKSNAP backup prune -o "$b" --keep-last 3 --dry-run || fail "prune --dry-run"
[ -e "$b/$name.1.json" ] || fail "--dry-run dropped a point"
before=$(du -s -B1 "$b" | cut -f1)
out=$($BLKSNAP --json backup prune -o "$b" --keep-last 3) || fail "prune"
echo "$out"
[ "$(field "$out" kept)" = "[5, 6, 7]" ] || fail "kept $(field "$out" kept)"
[ "$(field "$out" dropped)" = "[1, 2, 3, 4]" ] || fail "dropped $(field "$out" dropped)"
after=$(du -s -B1 "$b" | cut -f1)
echo "# prune: backup directory $before -> $after bytes" | tee -a "$w/table"
ls "$b"
for id in 1 2 3 4; do
	! ls "$b/$name.$id".* 2>/dev/null || fail "files of point $id left"
done
for id in 5 6 7; do
	$BLKSNAP verify --backup "$b/$name" --point $id || fail "verify point $id after prune"
	$BLKSNAP restore --backup "$b/$name" --point $id -d "$dev2" || fail "restore point $id after prune"
	[ "$(content "$dev2")" = "$(cat "$w/sum.$id")" ] || fail "point $id differs after prune"
done
[ "$(qemu-img info --output=json "$b/$name.5.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("backing-filename"))')" = None ] ||
	fail "point 5 is still built on another"
qemu-img check "$b/$name.7.qcow2" || fail "qemu-img check after prune"

step "a further incremental builds on the pruned chain"
changed=$(change 8) || fail "change"
backup --incremental
[ "$(field "$out" id)" = 8 ] || fail "the next point is not 8"
[ "$(field "$out" bytes_stored)" = "$changed" ] || fail "point 8 stored other than what changed"
$BLKSNAP restore --backup "$b/$name" -d "$dev2" || fail "restore point 8"
[ "$(content "$dev2")" = "$(content "$dev")" ] || fail "point 8 restored differs"
cat "$w/table"
echo "# total: ${SECONDS}s"
exit 0
