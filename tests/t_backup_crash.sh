# SPDX-License-Identifier: GPL-2.0
# A backup killed at any moment, or failing on a full backup file system,
# never makes an earlier restore point worse. An incremental backup is
# killed (SIGKILL, delivered by strace as the chosen system call is entered)
# while it writes the new point's image, just before the complete image is
# renamed into place, and just before its metadata is; each time every
# earlier point still verifies and restores exactly, `backup list` shows no
# new point, and the next backup removes what was left and succeeds. On a
# backup file system too small for the next point, the backup fails with
# ENOSPC, leaves nothing behind, and the earlier points are intact.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
size=$((128 << 20))
snap_loop dev $size
snap_loop dev2 $size
on_exit $BLKSNAP detach -d "$dev"
on_exit snap_destroy_all
: >"$w/diff"
b=$w/backups
name=$(basename "$dev")

# change MIB: random data over MIB MiB at a random MiB of the device.
change() {
	dd if=/dev/urandom of="$dev" bs=1M count="$1" seek=$((RANDOM % (size / 1048576 - $1))) \
		oflag=direct status=none || fail "change"
}

# backup DIR ARGS...: back up $dev to DIR; set $out to the report.
backup() {
	local dir=$1
	shift
	out=$($BLKSNAP --json backup -d "$dev" -o "$dir" -s "$w/diff" -l 128M "$@") || fail "backup $*"
	echo "$out"
}

# points DIR: the ids of the points in DIR, as backup list gives them.
points() {
	$BLKSNAP --json backup list -o "$1" | python3 -c 'import json,sys; print(*[p["id"] for p in json.load(sys.stdin)])'
}

# intact DIR ID...: the points verify against their checksums and restore
# to the device content recorded at their backup.
intact() {
	local dir=$1 id
	shift
	for id in "$@"; do
		$BLKSNAP verify --backup "$dir/$name" --point "$id" >/dev/null || fail "point $id does not verify"
		$BLKSNAP restore --backup "$dir/$name" --point "$id" -d "$dev2" >/dev/null ||
			fail "point $id does not restore"
		[ "$(dev_sum "$dev2")" = "$(cat "$w/sum.$id")" ] || fail "point $id restored differs"
	done
	echo "points $* intact"
}

step "points 1 (full) and 2 (incremental)"
dd if=/dev/urandom of="$dev" bs=1M count=48 oflag=direct status=none || fail "fill"
backup "$b"
dev_sum "$dev" >"$w/sum.1"
change 4
backup "$b" --incremental
dev_sum "$dev" >"$w/sum.2"
intact "$b" 1 2

# The system call to kill the backup at, and which one (strace's when=):
# a write of the image (the 40th pwrite64 of about 2 per 64 KiB cluster of
# the 8 MiB changed), the first rename (the image, complete and synced)
# and the third (the metadata; the image and checksums are in place).
moments=("pwrite64 40 while it writes the image"
	"rename 1 before the image is renamed into place"
	"rename 3 before the metadata is written into place")
next=3
for moment in "${moments[@]}"; do
	read -r call when what <<<"$moment"
	step "SIGKILL $what"
	change 8
	# error= keeps the call from running: the process dies on entering it.
	# (strace injects only into the calls it traces.)
	if strace -f -qq -o "$w/strace" -e "trace=$call" \
		-e "inject=$call:error=EIO:signal=KILL:when=$when" \
		$BLKSNAP backup -d "$dev" -o "$b" -s "$w/diff" -l 128M --incremental >"$w/out" 2>&1; then
		cat "$w/out"
		fail "the backup was not killed $what"
	fi
	grep -q "killed by SIGKILL" "$w/strace" || { cat "$w/strace"; fail "not killed by SIGKILL"; }
	ls "$b"
	[ "$(points "$b")" = "1 2" ] || fail "a killed backup added a point: $(points "$b")"
	# Killed, it could not destroy its snapshot.
	[ "$(snap_count)" = 1 ] || fail "no snapshot left by the killed backup"
	snap_destroy_all
	intact "$b" 1 2
	$BLKSNAP backup list -o "$b" || fail "backup list"
done

step "the next backup removes the leftovers and builds on point 2"
change 2
out=$($BLKSNAP --json backup -d "$dev" -o "$b" -s "$w/diff" -l 128M --incremental 2>"$w/err") ||
	{ cat "$w/err"; fail "backup after the kills"; }
echo "$out"
cat "$w/err"
grep -q "removed $name.3.qcow2" "$w/err" || fail "the image of the killed backup was not removed"
[ "$(field "$out" id)" = $next ] || fail "the next point is $(field "$out" id), not $next"
[ "$(field "$out" kind)" = incremental ] || fail "not incremental"
dev_sum "$dev" >"$w/sum.3"
! ls "$b"/*.partial 2>/dev/null || fail "temporary files left"
intact "$b" 1 2 3

step "a backup file system too small for the next point"
small=$w/small
mkdir "$small"
mount -t tmpfs -o size=256M tmpfs "$small" || fail "mount tmpfs"
on_exit umount "$small"
rm -f "$w"/sum.*
backup "$small"
dev_sum "$dev" >"$w/sum.1"
# Room for 16 MiB more than the full point (whose size depends on where
# the earlier changes fell), and 32 MiB will change.
used=$(df -k --output=used "$small" | tail -n 1)
mount -o remount,size=$((used + 16384))k "$small" || fail "shrink the tmpfs"
df -k "$small"
change 32
if o=$($BLKSNAP backup -d "$dev" -o "$small" -s "$w/diff" -l 128M --incremental 2>&1); then
	fail "a backup to a full file system succeeded: $o"
fi
echo "$o"
grep -q ENOSPC <<<"$o" || fail "the failure does not say ENOSPC"
[ "$(snap_count)" = 0 ] || fail "a failed backup left its snapshot"
ls -la "$small"
! ls "$small"/*.partial 2>/dev/null || fail "a failed backup left temporary files"
[ "$(points "$small")" = 1 ] || fail "points after the failure: $(points "$small")"
intact "$small" 1
exit 0
