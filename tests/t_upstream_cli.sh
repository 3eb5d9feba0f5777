#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The CLI driven the way scripts written for upstream's blksnap tool drive
# it: the same commands and options (--opt=value forms too), the output
# parsed the way such scripts parse it (ids from snapshot_create's first line
# and from snapshot_collect's "ID " lines, key=value fields, the image from
# snapshot_info --field image, the watcher's lines). Load, attach, create
# with a device, take, mount the image and write to it, the watcher with and
# without an overflow, collect, CBT read and markdirtyblock by file, destroy,
# detach, unload.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w

# Upstream-style helpers: what such scripts define around the tool.
blksnap_field() { # FIELD: the value of FIELD=... on stdin
	sed -n "s/^$1=//p"
}
blksnap_snapshot_create() { # DEVICE STORAGE LIMIT -> ID
	local out
	out=$($BLKSNAP snapshot_create --device="$1" --file="$2" --limit="$3") || return 1
	head -n 1 <<<"$out"
}
blksnap_snapshot_collect() {
	$BLKSNAP snapshot_collect | sed -n 's/^\([0-9a-f-]\{36\}\) $/\1/p'
}

snap_loop dev 64M
mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4"
mkdir "$w/mnt" "$w/img" "$w/store"
mount "$dev" "$w/mnt" || fail "mount"
on_exit umount "$w/mnt"
for i in 1 2 3 4; do head -c 2M /dev/urandom >"$w/mnt/f$i"; done
sync

step "attach"
[ "$($BLKSNAP attach --device="$dev")" = "Attached successfully" ] || fail "attach"
on_exit $BLKSNAP detach --device="$dev"
[ "$($BLKSNAP attach -d "$dev")" = "Already was attached" ] || fail "attach again"
gen=$($BLKSNAP cbtinfo --device="$dev" | blksnap_field generation_id)
[ -n "$gen" ] || fail "cbtinfo: no generation_id"

step "create, collect, take"
: >"$w/store/diff"
id=$(blksnap_snapshot_create "$dev" "$w/store/diff" 64M) || fail "snapshot_create"
on_exit $BLKSNAP snapshot_destroy --id="$id"
echo "snapshot $id"
[ "$(blksnap_snapshot_collect)" = "$id" ] || fail "snapshot_collect does not list $id"
[ "$($BLKSNAP snapshot_info --device="$dev" --field=image)" = /dev/ ] || fail "image before the take"
$BLKSNAP snapshot_take --id="$id" || fail "snapshot_take"
img=$($BLKSNAP snapshot_info --device="$dev" --field=image)
[ "$($BLKSNAP snapshot_info -d "$dev" -f error_code)" = 0 ] || fail "error_code"
$BLKSNAP snapshot_waitevent --id="$id" --timeout=100 | grep -qx result=timeout || fail "waitevent"
for _ in $(seq 50); do [ -b "$img" ] && break; sleep 0.1; done
[ -b "$img" ] || fail "no image $img"
$BLKSNAP snapshot_watcher --id="$id" >"$w/watcher1" 2>&1 &
watcher=$!

step "the image mounts and takes writes; the original changes on its own"
(cd "$w/mnt" && sha256sum f1 f2 f3 f4) >"$w/sums"
rm "$w/mnt/f1"
head -c 4M /dev/urandom >"$w/mnt/f5"
sync
mount "$img" "$w/img" || fail "mount the image"
(cd "$w/img" && sha256sum -c --quiet "$w/sums") || fail "the image is not the content at the take"
head -c 1M /dev/urandom >"$w/img/written" || fail "write to the image"
sync
umount "$w/img" || fail "umount the image"
[ ! -e "$w/mnt/written" ] && [ ! -e "$w/mnt/f1" ] && [ -e "$w/mnt/f5" ] ||
	fail "the original took the image's write or lost its own"

step "CBT: readcbtmap, markdirtyblock by file"
$BLKSNAP readcbtmap --device="$dev" --file="$w/map" || fail "readcbtmap"
blocks=$($BLKSNAP cbtinfo -d "$dev" | blksnap_field block_count)
[ "$(stat -c %s "$w/map")" = "$blocks" ] || fail "readcbtmap: not block_count bytes"
out=$($BLKSNAP markdirtyblock --file="$w/mnt/f2") || fail "markdirtyblock --file"
echo "$out"
grep -qx "device path: '/dev/block/$(dev_id "$dev")'" <<<"$out" || fail "markdirtyblock: device path"
grep -qE '^allocate range: ofs=[0-9]+ cnt=[0-9]+$' <<<"$out" || fail "markdirtyblock: ranges"

step "destroy: the watcher says the snapshot is gone"
$BLKSNAP snapshot_destroy --id="$id" || fail "snapshot_destroy"
wait "$watcher" || fail "the watcher failed"
cat "$w/watcher1"
cmp "$w/watcher1" <(printf 'Start snapshot watcher.\nSnapshot not found\nSnapshot watcher finished\n') ||
	fail "watcher output"
[ -z "$(blksnap_snapshot_collect)" ] || fail "snapshot_collect after the destroy"
[ "$($BLKSNAP snapshot_info -d "$dev" -f image)" = /dev/ ] || fail "image after the destroy"
[ "$($BLKSNAP cbtinfo -d "$dev" | blksnap_field changes_number)" = 1 ] || fail "changes_number"

step "overflow: the watcher reports the corruption and finishes"
umount "$w/mnt" || fail "umount"
: >"$w/store/diff2"
id=$(blksnap_snapshot_create "$dev" "$w/store/diff2" 8M) || fail "snapshot_create"
on_exit $BLKSNAP snapshot_destroy --id="$id"
$BLKSNAP snapshot_take --id="$id" || fail "snapshot_take"
$BLKSNAP snapshot_watcher --id="$id" >"$w/watcher2" 2>&1 &
watcher=$!
# 32 MiB through a storage of 8 MiB: it reaches its limit, then overflows.
dd if=/dev/urandom of="$dev" bs=1M count=32 seek=16 oflag=direct status=none || fail "write"
for _ in $(seq 100); do kill -0 "$watcher" 2>/dev/null || break; sleep 0.1; done
kill -0 "$watcher" 2>/dev/null && fail "the watcher did not finish after the corruption"
wait "$watcher" || fail "the watcher failed"
cat "$w/watcher2"
d=$(dev_id "$dev")
grep -xE "[0-9]+ - The the difference storage already grow up to 8 MiB\. Limit has been reached\." \
	"$w/watcher2" || fail "watcher: no no_space line"
grep -xE "[0-9]+ - The snapshot was corrupted for device \[$d\] with error \"No space left on device\"\." \
	"$w/watcher2" || fail "watcher: no corrupted line"
[ "$(head -n 1 "$w/watcher2")" = "Start snapshot watcher." ] &&
	[ "$(tail -n 1 "$w/watcher2")" = "Snapshot watcher finished" ] || fail "watcher: first or last line"
[ "$($BLKSNAP snapshot_info -d "$dev" -f error_code)" = -28 ] || fail "error_code after the overflow"
$BLKSNAP snapshot_destroy --id="$id" || fail "snapshot_destroy"

step "detach and unload"
$BLKSNAP detach --device="$dev" || fail "detach"
rmmod blksnap || fail "rmmod"
exit 0
