#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Crash consistency of images: on ext4, an SQLite database and a journal
# file are changed and fsync'd without pause (tests/crash_app.py), with a
# writer of large files alongside, while snapshots are taken one after the
# other. Each image is copied; the copy is mounted (ext4 replays its
# journal) and the database opened read-write (SQLite rolls back a hot
# journal), then it must pass e2fsck -fn, and mounted read-only the
# applications' own checks: every transaction and record durable before
# the take is there, intact, and nothing that started after it.
# BLKSNAP_CRASH_TAKES (default 3) sets how many snapshots are checked.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 256M
mkfs.ext4 -q "$dev" || fail "mkfs.ext4"
mkdir "$w/mnt" "$w/copy" "$w/before" "$w/after"
mount "$dev" "$w/mnt" || fail "mount"
on_exit umount "$w/mnt"
mkdir "$w/mnt/app"

python3 tests/crash_app.py run "$w/mnt/app" "$w" &
app=$!
on_exit kill $app
(
	while :; do
		dd if=/dev/urandom of="$w/mnt/bulk" bs=1M count=32 conv=fsync status=none 2>/dev/null
	done
) &
bulk=$!
on_exit kill $bulk
for _ in $(seq 1 300); do
	[ -s "$w/db" ] && [ -s "$w/journal" ] && break
	kill -0 $app || fail "the application died"
	sleep 0.1
done

takes=${BLKSNAP_CRASH_TAKES:-3}
for i in $(seq 1 "$takes"); do
	step "snapshot $i of $takes"
	kill -0 $app || fail "the application died"
	cp "$w/db" "$w/journal" "$w/before/" || fail "the application published nothing"
	snap_create_file id "$w/storage$i" 256M "$dev"
	snap_take "$id"
	sleep 1
	cp "$w/db" "$w/journal" "$w/after/"
	img=$(image_of "$dev")
	dd if="$img" of="$w/copy.img" bs=1M iflag=direct status=none || fail "read the image"
	[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot reports an error"
	snap_destroy "$id"
	rm -f "$w/storage$i"

	mount -o loop "$w/copy.img" "$w/copy" || fail "mount the copy (journal replay)"
	python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM rows").fetchone()' \
		"$w/copy/app/app.db" || fail "open the database of the copy"
	umount "$w/copy" || fail "umount the copy"
	e2fsck -fn "$w/copy.img" >"$w/fsck.log" 2>&1 || { cat "$w/fsck.log"; fail "e2fsck of image $i"; }
	mount -o loop,ro "$w/copy.img" "$w/copy" || fail "mount the copy read-only"
	python3 tests/crash_app.py check "$w/copy/app" "$w/before" "$w/after"
	rc=$?
	umount "$w/copy"
	[ $rc = 0 ] || fail "the applications' check of image $i"
	rm -f "$w/copy.img"
done
exit 0
