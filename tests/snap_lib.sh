# SPDX-License-Identifier: GPL-2.0
#
# Snapshot helpers for the VM tests, sourced after tests/lib.sh.
#
# Helpers meant for $(...) report errors on stderr and print nothing, so
# that the caller's check fails. Helpers that register a cleanup (on_exit)
# set the variable named by their first argument instead of printing: in a
# $(...) subshell the registration would be lost (so is new_loop's). Cleanups
# run last registered first: create in the order loop device, filter,
# snapshot, mount, and they are undone as umount, snapshot_destroy, detach,
# losetup -d.

# A snapshot id as snapshot_create prints it (UUID text; dashes optional).
SNAP_ID_RE='[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}'
declare -A SNAP_DEVS=()

# snap_workdir VAR: a fresh directory in /tmp, removed at the end (without
# crossing into anything still mounted below it).
snap_workdir() {
	local __d
	__d=$(mktemp -d /tmp/snap.XXXXXX) || fail "mktemp"
	on_exit rm -rf --one-file-system "$__d"
	printf -v "$1" %s "$__d"
}

# snap_loop VAR SIZE [losetup options]: like new_loop, but sets VAR, and
# detaches the loop device and removes its backing file at the end.
snap_loop() {
	local __var=$1 __size=$2 __file __dev
	shift 2
	__file=$(mktemp /tmp/disk.XXXXXX) || fail "mktemp"
	on_exit rm -f "$__file"
	truncate -s "$__size" "$__file" || fail "truncate $__file"
	__dev=$(losetup --show -f "$@" "$__file") || fail "losetup $__file"
	on_exit losetup -d "$__dev"
	printf -v "$__var" %s "$__dev"
}

# snap_loop_stamped VAR SIZE SEED: snap_loop, every sector stamped by
# `stamp.py fill --seed SEED`.
snap_loop_stamped() {
	snap_loop "$1" "$2"
	python3 tests/stamp.py fill "${!1}" --seed "$3" || fail "stamp ${!1}"
}

# image_of DEV: the snapshot image disk of DEV, /dev/blksnap-MAJ-MIN.
image_of() {
	printf '/dev/blksnap-%d-%d\n' "0x$(stat -L -c %t "$1")" "0x$(stat -L -c %T "$1")"
}

# snap_create VAR STORAGE LIMIT DEV...: create a snapshot of the devices
# (the CLI attaches the filter where needed) with its difference storage in
# STORAGE, growing up to LIMIT (K/M/G suffixes), and set VAR to its id.
# Registers the detach of each device and then the destroy of the snapshot.
snap_create() {
	local __var=$1 __storage=$2 __limit=$3 __out __id __d
	local __args=()
	shift 3
	for __d in "$@"; do
		on_exit $BLKSNAP detach -d "$__d"
		__args+=(-d "$__d")
	done
	__out=$($BLKSNAP snapshot_create -f "$__storage" -l "$__limit" "${__args[@]}") ||
		fail "snapshot_create -f $__storage -l $__limit ${__args[*]}"
	__id=$(grep -oE "$SNAP_ID_RE" <<<"$__out" | head -n 1)
	[ -n "$__id" ] || fail "snapshot_create printed no id: '$__out'"
	on_exit $BLKSNAP snapshot_destroy -i "$__id"
	SNAP_DEVS[$__id]="$*"
	echo "snapshot $__id of $* (storage $__storage, limit $__limit)"
	printf -v "$__var" %s "$__id"
}

# snap_create_file VAR FILE LIMIT DEV...: snap_create with a new, empty
# storage file FILE.
snap_create_file() {
	: >"$2" || fail "create $2"
	snap_create "$@"
}

# snap_take ID: take the snapshot and wait for the image of each of its
# devices (those given to snap_create) to appear.
snap_take() {
	local id=$1 d img _
	$BLKSNAP snapshot_take -i "$id" || fail "snapshot_take $id"
	for d in ${SNAP_DEVS[$id]:-}; do
		img=$(image_of "$d")
		for _ in $(seq 1 50); do
			[ -b "$img" ] && break
			sleep 0.1
		done
		[ -b "$img" ] || fail "no image $img for $d after the take"
	done
}

# snap_destroy ID: destroy the snapshot; its images must go away.
snap_destroy() {
	local id=$1 d img _
	$BLKSNAP snapshot_destroy -i "$id" || fail "snapshot_destroy $id"
	for d in ${SNAP_DEVS[$id]:-}; do
		img=$(image_of "$d")
		for _ in $(seq 1 50); do
			[ -e "$img" ] || break
			sleep 0.1
		done
		[ ! -e "$img" ] || fail "image $img still there after destroy"
	done
}

# snap_destroy_all: destroy every snapshot the module knows (for cleanups).
snap_destroy_all() {
	local id
	for id in $($BLKSNAP snapshot_collect 2>/dev/null | grep -oE "$SNAP_ID_RE"); do
		$BLKSNAP snapshot_destroy -i "$id"
	done
}

# snap_count: how many snapshots snapshot_collect lists.
snap_count() {
	local out
	out=$($BLKSNAP snapshot_collect) || { echo "snapshot_collect failed" >&2; return 1; }
	grep -cE "$SNAP_ID_RE" <<<"$out"
}

# snap_info DEV FIELD: a field of "snapshot_info -d DEV" (error_code, image).
snap_info() {
	$BLKSNAP snapshot_info -d "$1" --field "$2" || { echo "snapshot_info -d $1 failed" >&2; return 1; }
}

# field JSON NAME: a field of a JSON object (Python's text of it).
field() {
	python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# cbt_field DEV FIELD: a field of "cbtinfo --json -d DEV".
cbt_field() {
	local out
	out=$($BLKSNAP cbtinfo --json -d "$1") || { echo "cbtinfo -d $1 failed" >&2; return 1; }
	field "$out" "$2"
}

# cbt_expect DEV SPEC...: the CBT read table of DEV (readcbtmap) must hold,
# at each block of a SPEC BLOCK=V or FIRST-LAST=V, the value V, where V is
# a number, "+" (any non-zero), ">N" (greater than N) or "?" (anything);
# every block not named must be 0.
cbt_expect() {
	local dev=$1 map
	shift
	map=$(mktemp /tmp/cbtmap.XXXXXX) || fail "mktemp"
	if ! $BLKSNAP readcbtmap -d "$dev" -f "$map"; then
		rm -f "$map"
		fail "readcbtmap -d $dev"
	fi
	if ! python3 - "$map" "$@" <<'EOF'; then
import sys
table = open(sys.argv[1], "rb").read()
want = {}
for spec in sys.argv[2:]:
    blocks, value = spec.split("=")
    first, _, last = blocks.partition("-")
    for b in range(int(first), int(last or first) + 1):
        want[b] = value

def ok(got, w):
    if w == "?":
        return True
    if w == "+":
        return got != 0
    if w.startswith(">"):
        return got > int(w[1:])
    return got == int(w)

marked = [f"{b}={v}" for b, v in enumerate(table) if v]
print(f"CBT table: {len(table)} blocks, marked: {' '.join(marked[:64])}"
      + (" ..." if len(marked) > 64 else ""))
bad = [f"block {b}: {v}, expected {want.get(b, '0')}"
       for b, v in enumerate(table) if not ok(v, want.get(b, "0"))]
bad += [f"block {b}: beyond the table" for b in want if b >= len(table)]
for line in bad[:20]:
    print("  " + line)
sys.exit(1 if bad else 0)
EOF
		rm -f "$map"
		fail "CBT table of $dev"
	fi
	rm -f "$map"
}

# tree_sums DIR: sha256 of every file below DIR, sorted by path.
tree_sums() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# tree_check DIR SUMS WHAT: the files below DIR are exactly those in SUMS.
tree_check() {
	diff <(tree_sums "$1") "$2" || fail "$3: files differ from $2"
}

# dev_sum DEV: sha256 of the whole device, read with direct I/O.
dev_sum() {
	dd if="$1" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# fill_random DEV: random data over the whole of DEV (whole MiBs).
fill_random() {
	local size
	size=$(blockdev --getsize64 "$1") || return 1
	dd if=/dev/urandom of="$1" bs=1M count=$((size >> 20)) iflag=fullblock oflag=direct status=none
}

# dm ARGS...: dmsetup without udev (the VM has none); it makes its own nodes.
dm() {
	dmsetup --noudevrules --noudevsync "$@" 2>&1 | grep -v "not configured for semaphores"
	return "${PIPESTATUS[0]}"
}

# slow_dev VAR DEV SLOW_MIB DELAY_MS: a device-mapper device over DEV, at
# the same sectors, whose first SLOW_MIB MiB delay each read by DELAY_MS
# (dm-delay; writes are not delayed) and whose rest maps DEV straight. Sets
# VAR to its path and removes it at the end. Race tests use it to hold a
# read of the original in flight for as long as they need.
slow_dev() {
	local __var=$1 __dev=$2 __slow=$(($3 * 2048)) __delay=$4 __size __name
	__size=$(blockdev --getsz "$__dev") || fail "blockdev --getsz $__dev"
	__name=slow$RANDOM
	dm create "$__name" --table "0 $__slow delay $__dev 0 $__delay $__dev 0 0
$__slow $((__size - __slow)) linear $__dev $__slow" && dm mknodes "$__name" ||
		fail "dmsetup create $__name"
	on_exit dm remove --retry "$__name"
	printf -v "$__var" %s "/dev/mapper/$__name"
}

# race ARGS...: tests/race.py (timed I/O in parallel lanes, checked reads).
race() {
	python3 tests/race.py "$@"
}

# expect_broken ID DEV ERRNO: snapshot ID broke with ERRNO: its next event
# is "corrupted" with ERRNO, SNAPSHOTINFO of DEV says -ERRNO, and reads of
# DEV's image fail.
expect_broken() {
	local id=$1 dev=$2 errno=$3 out
	out=$($BLKSNAP snapshot_waitevent -i "$id" -t 10000) || fail "waitevent"
	echo "$out"
	grep -qx "event=corrupted" <<<"$out" || fail "no corrupted event"
	grep -qx "err_code=$errno" <<<"$out" || fail "the corrupted event does not carry errno $errno"
	[ "$(snap_info "$dev" error_code)" = "-$errno" ] || fail "SNAPSHOTINFO is not -$errno"
	if dd if="$(image_of "$dev")" of=/dev/null bs=1M count=1 iflag=direct status=none 2>/dev/null; then
		fail "the image of a broken snapshot still reads"
	fi
}

# write_kept DEV MIB COUNT: write COUNT MiB of random data at MiB MIB of
# DEV; the write must succeed and read back.
write_kept() {
	local pattern
	pattern=$(mktemp /tmp/pattern.XXXXXX) || fail "mktemp"
	head -c "$(($3 << 20))" /dev/urandom >"$pattern"
	if ! dd if="$pattern" of="$1" bs=1M seek="$2" oflag=direct status=none; then
		rm -f "$pattern"
		fail "a write to $1 failed"
	fi
	if ! cmp <(dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none) "$pattern"; then
		rm -f "$pattern"
		fail "$1 lost a write"
	fi
	rm -f "$pattern"
}
