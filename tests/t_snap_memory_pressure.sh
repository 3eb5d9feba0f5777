#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A snapshot held while the writers live in a memory cgroup of 32 MiB:
# buffered first-touch writes of the whole device (reclaim and writeback
# under the cgroup's limit), a discard of the whole device and an mkfs on
# it. Nothing may be OOM-killed or hang, every step must succeed, the image
# must stay the content at the take, and the memory the system uses beyond
# caches (where the module's chunk buffers are) must stay within the
# chunks allowed in memory (chunk_maximum_in_queue) plus slack.
. tests/lib.sh
. tests/snap_lib.sh
# 32 chunks of 256 KiB: 8 MiB.
load_module chunk_maximum_in_queue=32 diff_storage_minimum=16384
snap_workdir w
snap_loop dev 128M
fill_random "$dev" || fail "fill"
sum_before=$(dev_sum "$dev")
snap_create_file id "$w/storage" 512M "$dev"
snap_take "$id"
img=$(image_of "$dev")

cg=/sys/fs/cgroup
grep -q " $cg cgroup2 " /proc/mounts || mount -t cgroup2 none "$cg" || fail "mount cgroup2"
echo +memory >"$cg/cgroup.subtree_control" || fail "enable the memory controller"
mem=$cg/blksnap-mem$$
mkdir "$mem" || fail "mkdir $mem"
on_exit rmdir "$mem"
echo $((32 << 20)) >"$mem/memory.max" || fail "memory.max"

# Memory in use beyond the page cache and reclaimable slab, in KiB.
in_use() {
	awk '/^(MemTotal|MemFree|Buffers|Cached|SReclaimable):/ {v[$1] = $2}
		END {print v["MemTotal:"] - v["MemFree:"] - v["Buffers:"] - v["Cached:"] - v["SReclaimable:"]}' \
		/proc/meminfo
}
# in_cgroup CMD...: run CMD in the memory cgroup while sampling in_use;
# raises peak (KiB) to the growth seen.
peak=0
in_cgroup() {
	local base pid most=0 now
	drop_caches
	base=$(in_use)
	(echo $BASHPID >"$mem/cgroup.procs" && exec "$@") &
	pid=$!
	while kill -0 $pid 2>/dev/null; do
		now=$(($(in_use) - base))
		[ $now -gt $most ] && most=$now
		sleep 0.05
	done
	wait $pid || fail "'$*' failed under memory pressure"
	echo "$*: peak $((most / 1024)) MiB beyond caches"
	[ $most -gt $peak ] && peak=$most
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

step "the image is still the content at the take"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot reports an error"
[ "$(dev_sum "$img")" = "$sum_before" ] || fail "the image changed"
exit 0
