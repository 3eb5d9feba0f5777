#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Snapshots held while the writers live in a memory cgroup of 32 MiB:
# buffered first-touch writes of the whole device (reclaim and writeback
# under the cgroup's limit), a discard of the whole device and an mkfs on
# it, each under a snapshot of its own so that each copies every chunk.
# Nothing may be OOM-killed or hang, every step must succeed, each image
# must stay the content at its take, and the memory the system uses beyond
# caches (where the module's chunk buffers are) must stay within the
# chunks allowed in memory (chunk_maximum_in_queue) plus slack.
. tests/lib.sh
. tests/snap_lib.sh
# 32 chunks of 256 KiB: 8 MiB.
load_module chunk_maximum_in_queue=32 diff_storage_minimum=16384
snap_workdir w
snap_loop dev 128M
fill_random "$dev" || fail "fill"
img=$(image_of "$dev")

cg=/sys/fs/cgroup
grep -q " $cg cgroup2 " /proc/mounts || mount -t cgroup2 none "$cg" || fail "mount cgroup2"
echo +memory >"$cg/cgroup.subtree_control" || fail "enable the memory controller"
mem=$cg/blksnap-mem$$
mkdir "$mem" || fail "mkdir $mem"
on_exit rmdir "$mem"
echo $((32 << 20)) >"$mem/memory.max" || fail "memory.max"

# Memory in use beyond the page cache and reclaimable slab, in KiB. Pages
# on the per-CPU free lists are free.
in_use() {
	local pcp
	pcp=$(awk '$1 == "count:" {n += $2} END {print n * 4}' /proc/zoneinfo)
	awk -v pcp="$pcp" '/^(MemTotal|MemFree|Buffers|Cached|SReclaimable):/ {v[$1] = $2}
		END {print v["MemTotal:"] - v["MemFree:"] - pcp - v["Buffers:"] - v["Cached:"] - v["SReclaimable:"]}' \
		/proc/meminfo
}
# in_cgroup CMD...: run CMD in the memory cgroup under a new snapshot while
# sampling in_use, then check and destroy the snapshot; raises peak (KiB)
# to the growth seen in two samples in a row. A single sample is not
# enough: pages of a file being truncated (here the loop device's backing
# file, by the discards) leave the page cache before they are counted
# free, and a lone sample caught up to 41 MiB of them with no snapshot.
peak=0
in_cgroup() {
	local id sum base pid most=0 now last=0
	sum=$(dev_sum "$dev")
	snap_create_file id "$w/storage" 512M "$dev"
	snap_take "$id"
	drop_caches
	base=$(in_use)
	(echo $BASHPID >"$mem/cgroup.procs" && exec "$@") &
	pid=$!
	while kill -0 $pid 2>/dev/null; do
		now=$(($(in_use) - base))
		[ $((now < last ? now : last)) -gt $most ] && most=$((now < last ? now : last))
		last=$now
		sleep 0.05
	done
	wait $pid || fail "'$*' failed under memory pressure"
	echo "$*: peak $((most / 1024)) MiB beyond caches"
	[ $most -gt $peak ] && peak=$most
	[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot reports an error"
	[ "$(dev_sum "$img")" = "$sum" ] || fail "the image changed"
	snap_destroy "$id"
}
in_cgroup dd if=/dev/urandom of="$dev" bs=1M count=128 iflag=fullblock status=none conv=fsync
in_cgroup blkdiscard "$dev"
in_cgroup mkfs.ext4 -q -F "$dev"
echo "cgroup memory.peak $(($(cat "$mem/memory.peak") >> 20)) MiB"
grep -E "^(max|oom|oom_kill) " "$mem/memory.events"
[ "$(awk '/^oom_kill / {print $2}' "$mem/memory.events")" = 0 ] || fail "a process was OOM-killed"
peak_mib=$((peak / 1024))
echo "peak memory beyond caches: $peak_mib MiB (chunks allowed in memory: 8 MiB)"
[ "$peak_mib" -lt 40 ] || fail "copy-on-write under memory pressure took $peak_mib MiB"
exit 0
