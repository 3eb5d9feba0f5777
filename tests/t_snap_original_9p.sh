#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Chunk buffers must stay whole when the I/O that fills them takes page
# references: 9p (in the VM, the share of the results, /run/out) reads with
# zero copy, and takes a reference to every page it reads into, then puts
# it. The original is a loop device over a file on 9p, so that every chunk
# copied on write is read that way; a buffer of several pages must count
# those references on one page (a block of pages that is not one compound
# page gave its other pages back to the allocator at the first put). The
# image must be the content at the take, the original the new writes, and
# the kernel log clean.
. tests/lib.sh
. tests/snap_lib.sh
[ "$(findmnt -n -o FSTYPE /run/out)" = 9p ] || {
	echo "# SKIP /run/out is not a 9p mount"
	exit $KSFT_SKIP
}
load_module diff_storage_minimum=16384
snap_workdir w
file=/run/out/original-9p.img
truncate -s 16M "$file" || fail "truncate $file"
on_exit rm -f "$file"
dev=$(losetup --show -f "$file") || fail "losetup $file"
on_exit losetup -d "$dev"
stamp() { python3 tests/stamp.py "$@"; }
stamp fill "$dev" --seed 41 || fail "stamp the original"

step "snapshot, then every chunk copied on write through 9p"
: >"$w/diff"
snap_create id "$w/diff" 32M "$dev"
snap_take "$id"
img=$(image_of "$dev")
stamp fill "$dev" --seed 42 || fail "overwrite of the original"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot reports an error"

step "the image is the content at the take, the original the new one"
stamp verify "$img" --seq 0 --seed 41 || fail "the image is not the content at the take"
echo 3 >/proc/sys/vm/drop_caches
stamp verify "$dev" --seq 0 --seed 42 || fail "the original lost a write"
exit 0
