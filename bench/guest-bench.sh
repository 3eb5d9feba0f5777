#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark itself, run in the test VM by scripts/bench.sh (see
# bench/README.md). Writes JSON lines to $BENCH_OUT/bench.jsonl and each fio
# result to $BENCH_OUT/fio/; bench/report.py turns them into tables. A step
# that fails is recorded as an "error" line and the run goes on; the exit
# status is 1 if any step failed.
#
# Environment: BLKSNAP_MODULE, BLKSNAP_TOOLS, BENCH_MODE (quick|full),
# BENCH_PARTS (what to run, default "memory,take,virtio,loop"; "profile"
# adds perf profiles of tracked and first-touch writes and copied-image
# reads on both targets), BENCH_REPS
# (repetitions instead of the mode's),
# BENCH_OUT (default /run/out), BENCH_FIO_PRELOAD (bench/fio-noshm.c built),
# BENCH_VIRTIO_MB and BENCH_VIRTIO_COW_MB (the sizes of /dev/vda and
# /dev/vdb, checked before anything is written to them).
set -u
cd "$(dirname "$0")/.." || exit 1

mode=${BENCH_MODE:-quick}
out=${BENCH_OUT:-/run/out}
BLKSNAP=$BLKSNAP_TOOLS/blksnap
jsonl=$out/bench.jsonl
mkdir -p "$out/fio"
rm -f "$jsonl" "$out"/fio/*.json "$out"/profile-*.txt

if [ "$mode" = full ]; then
	reps=3 runtime=10
	loop_mb=512 loop_cow_mb=640
	cbt_gb=1024
	storage_step=262144 # diff_storage_minimum: 128 MiB
else
	reps=1 runtime=1
	loop_mb=32 loop_cow_mb=48
	cbt_gb=4
	storage_step=16384 # 8 MiB: less than the quick devices
fi
reps=${BENCH_REPS:-$reps}
parts=${BENCH_PARTS:-memory,take,virtio,loop}
parts=" ${parts//,/ } "
virtio_mb=${BENCH_VIRTIO_MB:-0} virtio_cow_mb=${BENCH_VIRTIO_COW_MB:-0}
take_counts="1 4 16"
chunk_sectors=512 # blksnap's default chunk (chunk_minimum_shift=18), for dm too
failed=0
target_disks=() # what quiesce flushes

log() {
	echo "bench: [${SECONDS}s] $*"
}

# JSON line from KEY=VALUE pairs; values that are numbers stay numbers.
emit() {
	local kv k v sep="" line="{"
	for kv in "$@"; do
		k=${kv%%=*} v=${kv#*=}
		if [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
			line+="$sep\"$k\":$v"
		else
			v=${v//\\/\\\\}
			line+="$sep\"$k\":\"${v//\"/\\\"}\""
		fi
		sep=,
	done
	echo "$line}" >>"$jsonl"
}

error() {
	log "ERROR: $*"
	emit type=error "what=$*"
	failed=1
}

# fio needs System V shared memory, which the fast kernel leaves out.
fio_env=()
if [ ! -e /proc/sysvipc ] && [ -n "${BENCH_FIO_PRELOAD:-}" ]; then
	fio_env=(env "LD_PRELOAD=$BENCH_FIO_PRELOAD")
fi
engine=libaio
"${fio_env[@]}" fio --enghelp=libaio >/dev/null 2>&1 || engine=psync

# The four workloads: fio options of each. Writes and reads make one pass
# over the whole device in random or sequential order, cut off at the
# runtime; fio reports the rate of what it did.
declare -A WORKLOAD=(
	[randwrite4k]="--rw=randwrite --bs=4k"
	[seqwrite1m]="--rw=write --bs=1m"
	[randread4k]="--rw=randread --bs=4k"
	[seqread1m]="--rw=read --bs=1m"
	[randread4k-qd1]="--rw=randread --bs=4k --iodepth=1"
	[seqread1m-qd1]="--rw=read --bs=1m --iodepth=1"
	[randread4k-qd32]="--rw=randread --bs=4k --iodepth=32"
	[seqread1m-qd32]="--rw=read --bs=1m --iodepth=32"
)
WRITES="randwrite4k seqwrite1m"
READS="randread4k seqread1m"
# Reads at iodepth 1 and 32 (the others run at 4): of the images with every
# chunk copied, against the raw device.
DEPTH_READS="randread4k-qd1 seqread1m-qd1 randread4k-qd32 seqread1m-qd32"

# first_touch_log SIZE: a fio I/O log of one 4 KiB write at the start of
# each chunk of a SIZE-byte device, in a random order (the same every time):
# every write of a first-touch run meets a chunk not copied yet.
first_touch_log() {
	local log=/tmp/first-touch-$1.iolog
	[ -e "$log" ] || python3 - "$1" "$((chunk_sectors * 512))" "$log" <<-'EOF'
		import random, sys
		size, chunk, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
		starts = list(range(0, size - 4096 + 1, chunk))
		random.Random(1).shuffle(starts)
		with open(path, "w") as f:
		    f.write("fio version 2 iolog\n/dev/target add\n/dev/target open\n")
		    f.writelines(f"/dev/target write {s} 4096\n" for s in starts)
		    f.write("/dev/target close\n")
	EOF
	echo "$log"
}

# fio_run TARGET SETUP REP DEV WORKLOAD...: measured jobs, one after the
# other (stonewall) in one fio process: under TCG fio takes seconds to start.
# Each job runs for the whole runtime, passing over the device again if it
# must (a sequential pass can take a fraction of a second), except the
# first-touch writes of a snapshot: one pass at most, and the 4 KiB ones
# replay first_touch_log, so that every write pays for a copy.
fio_run() {
	local target=$1 setup=$2 rep=$3 dev=$4 name file size w jobs=() passes=()
	shift 4
	name=$target-$setup-$rep-$1
	file=fio/$name.json
	size=$(blockdev --getsize64 "$dev") || { error "$name: size of $dev"; return; }
	for w in "$@"; do
		if [[ $setup == *-first && $w == randwrite4k ]]; then
			jobs+=(--name="$w" --stonewall --read_iolog="$(first_touch_log "$size")"
				--replay_redirect="$dev" --replay_no_stall=1)
		else
			# shellcheck disable=SC2206
			jobs+=(--name="$w" --stonewall ${WORKLOAD[$w]})
		fi
	done
	[[ $setup == *-first ]] || passes=(--time_based)
	quiesce
	if "${fio_env[@]}" fio --filename="$dev" --thread --direct=1 --ioengine="$engine" \
		--iodepth=4 --size="$size" --runtime="$runtime" "${passes[@]}" --randrepeat=1 \
		--output-format=json --output="$out/$file" "${jobs[@]}" >/tmp/fio.log 2>&1; then
		for w in "$@"; do
			emit type=fio "target=$target" "setup=$setup" "workload=$w" "rep=$rep" \
				"dev=$dev" "file=$file" "job=$w"
		done
	else
		cat /tmp/fio.log
		error "fio $name $* on $dev"
	fi
}

# fill DEV: write the whole device once (untimed), so that every chunk of a
# snapshot is copied, or every block of a disk image is allocated on the host.
fill() {
	dd if=/dev/zero of="$1" bs=1M oflag=direct status=none 2>/tmp/dd.log ||
		grep -q "No space left" /tmp/dd.log || error "fill $1: $(cat /tmp/dd.log)"
}

# quiesce: flush the target's disks before a measured run. A virtio disk's
# writes land in the host's page cache, and what the run before wrote (a
# fill: gigabytes) is written back meanwhile, competing with the I/O
# measured; a flush makes the host write it back now.
quiesce() {
	[ ${#target_disks[@]} = 0 ] || sync "${target_disks[@]}" || error "flush ${target_disks[*]}"
}

# settle DEV: wait until nothing has been written to DEV for half a second
# (up to a minute): the copies of chunks are stored in the background.
settle() {
	local stat prev="" cur _
	stat=/sys/class/block/$(basename "$(readlink -f "$1")")/stat
	for _ in $(seq 1 120); do
		cur=$(awk '{print $7}' "$stat")
		[ "$cur" = "$prev" ] && return
		prev=$cur
		sleep 0.5
	done
}

image_of() {
	printf '/dev/blksnap-%d-%d\n' "0x$(stat -L -c %t "$1")" "0x$(stat -L -c %T "$1")"
}

wait_for() {
	local _
	for _ in $(seq 1 100); do
		[ -b "$1" ] && return 0
		sleep 0.1
	done
	error "no $1"
	return 1
}

# snap_new STORAGE LIMIT DEV...: create a snapshot, print its id.
snap_new() {
	local storage=$1 limit=$2 o args=()
	shift 2
	for d in "$@"; do args+=(-d "$d"); done
	o=$($BLKSNAP snapshot_create -f "$storage" -l "$limit" "${args[@]}") || return 1
	tail -n 1 <<<"$o"
}

# Kernel memory the module can use: unreclaimable slab (kmalloc, also of
# large buffers) and vmalloc, in bytes; the median of three readings after
# dropping caches.
kmem() {
	local i v=()
	sync
	echo 3 >/proc/sys/vm/drop_caches
	for i in 1 2 3; do
		sleep 0.2
		v+=("$(awk '/^SUnreclaim:|^VmallocUsed:/ {s += $2} END {print s * 1024}' /proc/meminfo)")
	done
	printf '%s\n' "${v[@]}" | sort -n | sed -n 2p
}

dm() {
	dmsetup --noudevrules --noudevsync "$@" 2>&1 | grep -v "not configured for semaphores"
	return "${PIPESTATUS[0]}"
}

# --- memory: CBT tables and chunk maps per GiB of device -------------------

# CBT: a large sparse loop device, attached (tracking only), then with a
# snapshot taken of it (new CBT table, preserved-chunk bitmap; no chunk
# copied). Nothing is written to it.
mem_cbt() {
	local file=/tmp/cbt.img dev base attached taken id info blocks bsize
	truncate -s "${cbt_gb}G" "$file"
	dev=$(losetup --show -f "$file") || { error "losetup $file"; return; }
	base=$(kmem)
	if $BLKSNAP attach -d "$dev" >/dev/null; then
		attached=$(kmem)
		info=$($BLKSNAP cbtinfo -d "$dev")
		blocks=$(sed -n 's/^block_count=//p' <<<"$info")
		bsize=$(sed -n 's/^block_size=//p' <<<"$info")
		emit type=mem what=cbt "device_bytes=$((cbt_gb << 30))" "delta_bytes=$((attached - base))" \
			"formula_bytes=$((2 * ${blocks:-0}))" "block_count=${blocks:-0}" "block_size=${bsize:-0}"
		mkdir -p /tmp/memstore
		if id=$(snap_new /tmp/memstore 256M "$dev") && python3 bench/take.py "$id" >/dev/null; then
			taken=$(kmem)
			emit type=mem what=snapshot-idle "device_bytes=$((cbt_gb << 30))" \
				"delta_bytes=$((taken - attached))" \
				"formula_bytes=$(( ((cbt_gb << 30) / (chunk_sectors * 512) + 63) / 64 * 8 * 2 ))"
			$BLKSNAP snapshot_destroy -i "$id" >/dev/null || error "destroy $id"
		else
			error "snapshot of $dev for memory"
		fi
		$BLKSNAP detach -d "$dev" >/dev/null || error "detach $dev"
	else
		error "attach $dev"
	fi
	losetup -d "$dev"
	rm -rf "$file" /tmp/memstore
}

# Chunk maps: a snapshot of the virtio disk with every chunk copied and
# stored, against the same snapshot just taken. Chunks of 4 KiB (the
# smallest chunk_minimum_shift), so that a 1 GiB disk has 262,144 of them:
# with the default 256 KiB chunk its 4,096 chunks cost less than the slab
# pages the readings move by. What a chunk costs in the map does not depend
# on its size. The first of two such snapshots warms up: slab caches keep
# pages at the peak of what was in flight while the chunks were copied,
# which is not a cost per chunk; only the second is reported.
mem_chunks() {
	local dev=$1 cow=$2 id before taken copied size pass
	local shift=/sys/module/blksnap/parameters/chunk_minimum_shift default chunk=4096
	size=$(blockdev --getsize64 "$dev")
	default=$(cat $shift)
	echo 12 >$shift
	before=$(kmem)
	for pass in warm-up measure; do
		id=$(snap_new "$cow" "$(blockdev --getsize64 "$cow")" "$dev") || { error "snapshot of $dev for memory"; return; }
		if python3 bench/take.py "$id" >/dev/null; then
			taken=$(kmem)
			# What the readings vary by when nothing happens.
			[ $pass = measure ] && emit type=mem what=noise "delta_bytes=$(($(kmem) - taken))"
			taken=$(kmem)
			"${fio_env[@]}" fio --name=touch --filename="$dev" --thread --direct=1 --ioengine="$engine" \
				--iodepth=4 --rw=write --bs=$chunk --size="$size" \
				--output=/tmp/touch.log >/dev/null 2>&1 || error "touch every chunk of $dev"
			settle "$cow"
			copied=$(kmem)
			[ $pass = measure ] && emit type=mem what=chunks-copied "device_bytes=$size" \
				"delta_bytes=$((copied - taken))" "chunks=$((size / chunk))" "chunk_bytes=$chunk"
		else
			error "take for memory"
		fi
		$BLKSNAP snapshot_destroy -i "$id" >/dev/null || error "destroy $id"
	done
	echo "$default" >$shift
	$BLKSNAP detach -d "$dev" >/dev/null || error "detach $dev"
	# Whatever the snapshots did not give back (a leak, or noise).
	emit type=mem what=residual "device_bytes=$size" "delta_bytes=$(($(kmem) - before))"
}

# --- take latency -----------------------------------------------------------

# A snapshot of the first N of 16 idle loop devices; only the take ioctl
# is timed.
take_latency() {
	local n rep i devs=() id ns d
	for i in $(seq 1 16); do
		truncate -s 64M "/tmp/take$i.img"
		d=$(losetup --show -f "/tmp/take$i.img") || { error "losetup take$i"; return; }
		devs+=("$d")
	done
	mkdir -p /tmp/takestore
	for n in $take_counts; do
		for rep in $(seq 1 "$reps"); do
			if ! id=$(snap_new /tmp/takestore 256M "${devs[@]:0:n}"); then
				error "snapshot of $n devices"
				break
			fi
			if ns=$(python3 bench/take.py "$id"); then
				emit type=take "devices=$n" "rep=$rep" "ns=$ns"
				for d in "${devs[@]:0:n}"; do wait_for "$(image_of "$d")"; done
			else
				error "take of $n devices"
			fi
			$BLKSNAP snapshot_destroy -i "$id" >/dev/null || error "destroy $id"
		done
	done
	for d in "${devs[@]}"; do
		$BLKSNAP detach -d "$d" >/dev/null 2>&1
		losetup -d "$d"
	done
	rm -rf /tmp/take*.img /tmp/takestore
}

# --- throughput ------------------------------------------------------------

# blksnap_round TARGET REP ORIG COW W: a fresh snapshot; W on the original
# (first touch), the rest of the device copied, W again (rewrite); the
# image read before (nothing copied yet) with the first write workload's
# snapshot, after (every chunk copied) with the second's.
blksnap_round() {
	local target=$1 rep=$2 orig=$3 cow=$4 w=$5 id img info
	id=$(snap_new "$cow" "$(blockdev --getsize64 "$cow")" "$orig") ||
		{ error "$target: snapshot_create"; return; }
	if python3 bench/take.py "$id" >/dev/null && img=$(image_of "$orig") && wait_for "$img"; then
		if [ "$w" = randwrite4k ]; then
			fio_run "$target" blksnap-image-unchanged "$rep" "$img" $READS
		fi
		fio_run "$target" blksnap-first "$rep" "$orig" "$w"
		fill "$orig"
		settle "$cow"
		fio_run "$target" blksnap-rewrite "$rep" "$orig" "$w"
		if [ "$w" = seqwrite1m ]; then
			settle "$cow"
			fio_run "$target" blksnap-image-copied "$rep" "$img" $READS $DEPTH_READS
		fi
		info=$($BLKSNAP snapshot_info -d "$orig" --field error_code)
		[ "$info" = 0 ] || error "$target: snapshot broke: error_code $info"
	else
		error "$target: snapshot_take"
	fi
	$BLKSNAP snapshot_destroy -i "$id" >/dev/null || error "$target: snapshot_destroy"
}

# dm_origin ORIG: /dev/mapper/bench-origin, the snapshot-origin target over
# ORIG, through which writes to ORIG go while it has snapshots.
dm_origin() {
	dm create bench-origin --table "0 $(blockdev --getsz "$1") snapshot-origin $1" &&
		dm mknodes bench-origin
}

# dm_snapshot ORIG COW: /dev/mapper/bench-snap, a snapshot of ORIG (under
# bench-origin) with a new persistent exception store on COW.
dm_snapshot() {
	# A zeroed header: a new, empty exception store.
	dd if=/dev/zero of="$2" bs=1M count=1 oflag=direct status=none
	dm suspend bench-origin &&
		dm create bench-snap --table "0 $(blockdev --getsz "$1") snapshot $1 $2 P $chunk_sectors" &&
		dm resume bench-origin && dm mknodes bench-snap && return
	dm resume bench-origin
	return 1
}

# dm_round: the same with dm-snapshot (persistent exception store on COW,
# same chunk size). The origin goes through the snapshot-origin target.
dm_round() {
	local target=$1 rep=$2 orig=$3 cow=$4 w=$5
	dm_snapshot "$orig" "$cow" || { error "$target: dm-snapshot create"; return; }
	if [ "$w" = randwrite4k ]; then
		fio_run "$target" dm-image-unchanged "$rep" /dev/mapper/bench-snap $READS
	fi
	fio_run "$target" dm-first "$rep" /dev/mapper/bench-origin "$w"
	fill /dev/mapper/bench-origin
	settle "$cow"
	fio_run "$target" dm-rewrite "$rep" /dev/mapper/bench-origin "$w"
	if [ "$w" = seqwrite1m ]; then
		fio_run "$target" dm-image-copied "$rep" /dev/mapper/bench-snap $READS $DEPTH_READS
	fi
	dm status bench-snap | grep -q Invalid && error "$target: dm-snapshot invalidated"
	dm remove bench-snap || error "$target: dm remove"
}

# bench_target NAME ORIG COW: every setup and workload, REPS times,
# interleaved so that a drift of the machine spreads over all of them.
bench_target() {
	local target=$1 orig=$2 cow=$3 rep w
	log "target $target: $orig (storage $cow)"
	target_disks=("$orig" "$cow")
	emit type=target "target=$target" "dev=$orig" "cow=$cow" \
		"bytes=$(blockdev --getsize64 "$orig")" "cow_bytes=$(blockdev --getsize64 "$cow")"
	fill "$orig"
	fill "$cow"
	for rep in $(seq 1 "$reps"); do
		log "$target: repetition $rep of $reps"
		fio_run "$target" raw "$rep" "$orig" $WRITES $READS $DEPTH_READS
		if $BLKSNAP attach -d "$orig" >/dev/null; then
			fio_run "$target" tracking "$rep" "$orig" $WRITES $READS
			for w in $WRITES; do blksnap_round "$target" "$rep" "$orig" "$cow" "$w"; done
			$BLKSNAP detach -d "$orig" >/dev/null || error "$target: detach"
		else
			error "$target: attach"
		fi
		if dm_origin "$orig"; then
			for w in $WRITES; do dm_round "$target" "$rep" "$orig" "$cow" "$w"; done
			dm remove bench-origin || error "$target: dm remove origin"
		else
			error "$target: dm snapshot-origin"
		fi
	done
}

# on_loops FUNCTION: FUNCTION ORIGIN STORAGE with two loop devices over
# files in the guest's tmpfs (the loop target).
on_loops() {
	local lo lo_cow
	truncate -s "${loop_mb}M" /tmp/origin.img
	truncate -s "${loop_cow_mb}M" /tmp/cow.img
	if lo=$(losetup --show -f /tmp/origin.img) && lo_cow=$(losetup --show -f /tmp/cow.img); then
		"$1" "$lo" "$lo_cow"
		losetup -d "$lo"
		losetup -d "$lo_cow"
	else
		error "loop devices"
	fi
	rm -f /tmp/origin.img /tmp/cow.img
}

bench_loop() {
	bench_target loop "$1" "$2"
}

# --- profile ----------------------------------------------------------------

# perf_fio NAME DEV FIO_OPTION...: profile the whole guest (kernel call
# graphs) while fio runs on DEV; the report goes to profile-NAME.txt.
perf_fio() {
	local name=$1 dev=$2 data=/tmp/perf-$1.data
	shift 2
	quiesce
	if perf record -q -a -g -e cpu-clock -o "$data" -- "${fio_env[@]}" fio --name="$name" \
		--filename="$dev" --thread --direct=1 --ioengine="$engine" --iodepth=4 "$@" \
		--output="/tmp/perf-$name.fio" >/dev/null 2>&1; then
		perf report -i "$data" --stdio --no-children --sort dso,sym --percent-limit 0.5 \
			-g caller,0.5,callee,function,percent >"$out/profile-$name.txt" 2>/dev/null ||
			error "perf report $name"
	else
		error "perf record $name"
	fi
	rm -f "$data"
}

# perf_round NAME ORIG IMAGE COW: the profiles of one snapshot: first-touch
# 4 KiB writes to ORIG (NAME-first), then, with every chunk copied, 1 MiB
# writes to ORIG (NAME-rewrite) and reads of IMAGE (NAME-randread4k,
# NAME-seqread1m); queue depth 4, for the runtime.
perf_round() {
	local name=$1 orig=$2 img=$3 cow=$4 w
	perf_fio "$name-first" "$orig" --replay_redirect="$orig" --replay_no_stall=1 \
		--read_iolog="$(first_touch_log "$(blockdev --getsize64 "$orig")")"
	fill "$orig"
	settle "$cow"
	# shellcheck disable=SC2086
	perf_fio "$name-rewrite" "$orig" ${WORKLOAD[seqwrite1m]} --runtime="$runtime" --time_based
	for w in $READS; do
		# shellcheck disable=SC2086
		perf_fio "$name-$w" "$img" ${WORKLOAD[$w]} --runtime="$runtime" --time_based
	done
}

# profile_target TARGET ORIG COW: where the CPU goes in first-touch writes,
# rewrites, and reads of an image whose chunks are all copied, blksnap
# against dm-snapshot (profile-TARGET-{blksnap,dm}-{first,rewrite,
# randread4k,seqread1m}.txt); in the same 1 MiB writes and in 4 KiB random
# writes to the device alone (profile-TARGET-raw-{seqwrite1m,randwrite4k}.txt);
# and in those 4 KiB writes with the device tracked, no snapshot
# (profile-TARGET-tracking-randwrite4k.txt).
profile_target() {
	local target=$1 orig=$2 cow=$3 id img
	command -v perf >/dev/null || { error "no perf in the guest"; return; }
	log "profile: $orig"
	target_disks=("$orig" "$cow")
	# shellcheck disable=SC2086
	perf_fio "$target-raw-seqwrite1m" "$orig" ${WORKLOAD[seqwrite1m]} --runtime="$runtime" --time_based
	# shellcheck disable=SC2086
	perf_fio "$target-raw-randwrite4k" "$orig" ${WORKLOAD[randwrite4k]} --runtime="$runtime" --time_based
	# shellcheck disable=SC2086
	if $BLKSNAP attach -d "$orig" >/dev/null &&
		perf_fio "$target-tracking-randwrite4k" "$orig" ${WORKLOAD[randwrite4k]} \
			--runtime="$runtime" --time_based &&
		id=$(snap_new "$cow" "$(blockdev --getsize64 "$cow")" "$orig") &&
		python3 bench/take.py "$id" >/dev/null && img=$(image_of "$orig") && wait_for "$img"; then
		perf_round "$target-blksnap" "$orig" "$img" "$cow"
		$BLKSNAP snapshot_destroy -i "$id" >/dev/null || error "profile: destroy"
	else
		error "profile: blksnap snapshot"
	fi
	$BLKSNAP detach -d "$orig" >/dev/null 2>&1
	if dm_origin "$orig" && dm_snapshot "$orig" "$cow"; then
		perf_round "$target-dm" /dev/mapper/bench-origin /dev/mapper/bench-snap "$cow"
		dm remove bench-snap || error "profile: dm remove"
	else
		error "profile: dm-snapshot"
	fi
	dm remove bench-origin 2>/dev/null
}

profile_loop() {
	profile_target loop "$1" "$2"
}

# --- main ------------------------------------------------------------------

emit type=meta "mode=$mode" "reps=$reps" "runtime_s=$runtime" "engine=$engine" \
	"kernel=$(uname -r)" "guest_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
	"guest_cpus=$(nproc)" "guest_mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" \
	"chunk_bytes=$((chunk_sectors * 512))" "diff_storage_minimum=$storage_step" \
	"fio=$(fio --version)" "parts=$(echo $parts)"
log "mode $mode: $reps repetition(s) of ${runtime}s, fio engine $engine"

insmod "$BLKSNAP_MODULE" diff_storage_minimum=$storage_step || { error "insmod"; exit 1; }

# The virtio disks are vm.sh's BLKSNAP_VM_DISKS: check them before writing.
virtio_ok=1
for d in "vda $virtio_mb" "vdb $virtio_cow_mb"; do
	set -- $d
	if [ "$(blockdev --getsize64 "/dev/$1" 2>/dev/null)" != "$(($2 << 20))" ]; then
		error "/dev/$1 is not the ${2} MiB benchmark disk"
		virtio_ok=0
	fi
done

if [[ $parts == *" memory "* ]]; then
	log "memory"
	mem_cbt
	[ $virtio_ok = 1 ] && mem_chunks /dev/vda /dev/vdb
fi

if [[ $parts == *" take "* ]]; then
	log "take latency"
	take_latency
fi

[[ $parts == *" virtio "* ]] && [ $virtio_ok = 1 ] && bench_target virtio /dev/vda /dev/vdb

[[ $parts == *" loop "* ]] && on_loops bench_loop
if [[ $parts == *" profile "* ]]; then
	[ $virtio_ok = 1 ] && profile_target virtio /dev/vda /dev/vdb
	on_loops profile_loop
fi

rmmod blksnap || error "rmmod"
log "done, $(grep -c '"type":"error"' "$jsonl") error(s)"
exit $failed
