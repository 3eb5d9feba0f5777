#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Devices pulled and the module unloaded while I/O runs on the original and
# on the image. Both the original and the difference storage are
# device-mapper devices over loop devices; "dmsetup remove --force" pulls
# one (with --deferred: its table fails all I/O from then on, and it goes
# away when its last user closes it).
# - rmmod under load: refused every time, nothing breaks.
# - the storage pulled: the snapshot breaks with an error, writes to the
#   original keep succeeding, image reads fail, nothing hangs, destroy
#   releases the storage and it goes away.
# - the original pulled: nothing hangs or crashes; destroy works, the
#   device goes away with the filter, and the module unloads.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=2048
snap_workdir w

# dm_over VAR SIZE: a dm-linear device over a new loop device.
dm_over() {
	local __loop __name=pull$RANDOM$1
	snap_loop __loop "$2"
	dm create "$__name" --table "0 $(blockdev --getsz "$__loop") linear $__loop 0" &&
		dm mknodes "$__name" || fail "dm create $__name"
	on_exit dm remove --retry "$__name"
	printf -v "$1" %s "/dev/mapper/$__name"
}

# load DEV IMG: writes to DEV and reads of IMG, each in a loop, until
# stop_load; a read or write that hangs for 60 s is written to $w/hung.
load_pids=()
load() {
	local dev=$1 img=$2
	rm -f "$w/hung"
	(
		while :; do
			timeout 60 dd if=/dev/urandom of="$dev" bs=64K count=4 seek=$((RANDOM % 128)) \
				oflag=direct status=none 2>/dev/null
			[ $? = 124 ] && echo "write to $dev" >>"$w/hung"
		done
	) &
	load_pids+=($!)
	(
		while :; do
			timeout 60 dd if="$img" of=/dev/null bs=256K count=8 skip=$((RANDOM % 32)) \
				iflag=direct status=none 2>/dev/null
			[ $? = 124 ] && echo "read of $img" >>"$w/hung"
			sleep 0.05
		done
	) &
	load_pids+=($!)
}
stop_load() {
	kill "${load_pids[@]}" 2>/dev/null
	wait "${load_pids[@]}" 2>/dev/null
	load_pids=()
	[ ! -e "$w/hung" ] || { cat "$w/hung"; fail "I/O hung"; }
}
on_exit stop_load

# pull DEV and gone DEV: pull a dm device; whether it has gone away.
pull() {
	dm remove --force --deferred "${1#/dev/mapper/}" || fail "dmsetup remove --force $1"
}
gone() {
	local _
	for _ in $(seq 1 50); do
		dm info "${1#/dev/mapper/}" >/dev/null 2>&1 || return 0
		sleep 0.1
	done
	return 1
}

dm_over orig 64M
dm_over storage 64M
fill_random "$orig" || fail "fill"
snap_create id "$storage" 64M "$orig"
snap_take "$id"
img=$(image_of "$orig")
load "$orig" "$img"
sleep 2

step "rmmod under load is refused, and changes nothing"
for _ in $(seq 1 20); do
	if rmmod blksnap 2>/dev/null; then fail "rmmod succeeded with a snapshot held"; fi
	sleep 0.1
done
[ "$(snap_info "$orig" error_code)" = 0 ] || fail "the snapshot broke"

step "the storage is pulled under load"
pull "$storage"
# A write to a chunk not copied yet needs the storage.
write_kept "$orig" 40 1
expect_broken "$id" "$orig" 5
stop_load
timeout -k 5 60 $BLKSNAP snapshot_destroy -i "$id" || fail "destroy after the storage went away"
gone "$storage" || fail "the storage stays after destroy"

step "the original is pulled under load"
snap_create_file id2 "$w/storage2" 64M "$orig"
snap_take "$id2"
load "$orig" "$img"
sleep 2
pull "$orig"
sleep 3
out=$(timeout -k 5 30 $BLKSNAP snapshot_waitevent -i "$id2" -t 1000)
echo "$out"
stop_load
timeout -k 5 60 $BLKSNAP snapshot_destroy -i "$id2" || fail "destroy after the original went away"
gone "$orig" || fail "the original stays after destroy"
rmmod blksnap || fail "rmmod after the devices went away"
exit 0
