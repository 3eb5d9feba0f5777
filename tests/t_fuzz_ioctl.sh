#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# ioctl fuzzing (tests/fuzz/fuzz.py): two processes of three threads each
# send random control and filter ioctls with valid, boundary and garbage
# arguments, open and read images and create and remove loop devices, while
# a writer keeps writing to the devices (so that copy-on-write runs). Every
# call must return; afterwards everything is destroyed and detached and the
# module unloads. The kernel log check catches any splat.
# BLKSNAP_FUZZ_CALLS (calls per process, default 3000) and BLKSNAP_FUZZ_SEED
# (default: random, printed) size and replay it.
# Coverage is counted in distinct outcomes (request, argument class,
# result). The seeds of tests/fuzz/corpus, each of which raised that count
# when found, run first (3000 calls, one process each); the random run then
# says how many outcomes it adds. BLKSNAP_FUZZ_GROW=N also tries N more
# random seeds and names those that add outcomes: the corpus to keep.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=2048
snap_workdir w
mkdir "$w/st"
mount -t tmpfs -o size=512M tmpfs "$w/st" || fail "mount tmpfs"
on_exit umount "$w/st"
snap_loop d1 32M
snap_loop d2 32M
snap_loop d3 32M
seed=${BLKSNAP_FUZZ_SEED:-$((RANDOM * 32768 + RANDOM))}
calls=${BLKSNAP_FUZZ_CALLS:-3000}
echo "seed $seed, $calls calls per process"

# Writes everywhere, all the time: 64 KiB at random places.
(
	while :; do
		for d in "$d1" "$d2" "$d3"; do
			dd if=/dev/urandom of="$d" bs=64K count=1 seek=$((RANDOM % 512)) \
				oflag=direct status=none 2>/dev/null
		done
	done
) &
writer=$!
on_exit kill "$writer"

# fuzz SEED CALLS OUTCOMES: one fuzzer process, its outcomes added to the
# file OUTCOMES; prints its summary line and how many outcomes were new.
fuzz() {
	python3 tests/fuzz/fuzz.py --seed "$1" --calls "$2" --threads 3 --outcomes "$3" \
		--dir "$w/st" "$d1" "$d2" "$d3" >"$w/fuzz.log" 2>&1 || { cat "$w/fuzz.log"; return 1; }
	grep -E "distinct outcomes|not seen before" "$w/fuzz.log"
}
corpus=$w/outcomes
: >"$corpus"
for s in $(grep -v '^#' tests/fuzz/corpus); do
	fuzz "$s" 3000 "$corpus" || fail "fuzzer, seed $s"
done
echo "corpus: $(wc -l <"$corpus") distinct outcomes"
for _ in $(seq 1 "${BLKSNAP_FUZZ_GROW:-0}"); do
	s=$((RANDOM * 32768 + RANDOM))
	out=$(fuzz "$s" 3000 "$corpus") || { echo "$out"; fail "fuzzer, seed $s"; }
	echo "$out"
	grep -q " 0 outcomes not seen" <<<"$out" || echo "seed $s adds outcomes: a corpus candidate"
done

pids=()
for p in 0 1; do
	cp "$corpus" "$w/outcomes$p"
	python3 tests/fuzz/fuzz.py --seed $((seed + p)) --calls "$calls" --threads 3 \
		--outcomes "$w/outcomes$p" --dir "$w/st" "$d1" "$d2" "$d3" >"$w/fuzz$p.log" 2>&1 &
	pids+=($!)
done
rc=0
for p in 0 1; do
	wait "${pids[$p]}" || rc=1
	cat "$w/fuzz$p.log"
done
kill "$writer"
wait "$writer" 2>/dev/null
[ $rc = 0 ] || fail "a fuzzer failed"
echo "coverage: $(sort -u "$corpus" "$w/outcomes0" "$w/outcomes1" | wc -l) distinct outcomes" \
	"(corpus $(wc -l <"$corpus"))"

step "after the fuzzing: nothing left, the devices keep working, the module unloads"
snap_destroy_all
# Loop devices the fuzzers made and removed keep their disk, and a filter.
for f in /sys/class/block/*/filter; do
	[ "$(cat "$f")" = blksnap ] || continue
	d=/dev/$(basename "$(dirname "$f")")
	$BLKSNAP detach -d "$d" >/dev/null || fail "detach $d"
done
[ "$(snap_count)" = 0 ] || fail "snapshots left"
head -c 1M /dev/urandom >"$w/pattern"
dd if="$w/pattern" of="$d1" bs=1M oflag=direct status=none || fail "write after the fuzzing"
cmp <(dd if="$d1" bs=1M count=1 iflag=direct status=none) "$w/pattern" || fail "$d1 lost a write"
rmmod blksnap || fail "the module does not unload"
exit 0
