# SPDX-License-Identifier: GPL-2.0
# Randomised integrity: seeded rounds of random multi-threaded O_DIRECT
# overwrites of a stamped device; the image must hold exactly the stamps of
# the take, the original the last write of some thread at every sector.
# Then the whole image is written and read back. Odd rounds keep the
# difference storage in a file, even ones on a block device (where image
# reads of stored chunks go straight to the device).
# Replay a failure with BLKSNAP_INTEGRITY_SEED (and BLKSNAP_INTEGRITY_ROUNDS).
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 64M
snap_loop storage_dev 128M
stamp() { python3 tests/stamp.py "$@"; }

rounds=${BLKSNAP_INTEGRITY_ROUNDS:-5}
base=${BLKSNAP_INTEGRITY_SEED:-$(($(date +%s%N) / 1000 % 1000000000))}
fill_seed=$base
plan=(--threads 4 --count 24 --max-len 1048576)
echo "integrity: $rounds rounds, base seed $base" \
	"(replay: BLKSNAP_INTEGRITY_SEED=$base BLKSNAP_INTEGRITY_ROUNDS=$rounds)"

$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
stamp fill "$dev" --seed "$fill_seed" || fail "fill"
img=$(image_of "$dev")
for r in $(seq 1 "$rounds"); do
	seed=$((base + r))
	step "round $r of $rounds: seed $seed"
	storage=$w/diff$r
	[ $((r % 2)) = 0 ] && storage=$storage_dev
	echo "difference storage: $storage"
	[ -b "$storage" ] || : >"$storage"
	snap_create id "$storage" 128M "$dev"
	snap_take "$id"
	# Read the image while copy-on-write runs under it: reads of chunks
	# not copied yet go straight to the original, racing with the writes.
	stamp verify "$img" --seq 0 --seed "$fill_seed" >"$w/concurrent.log" 2>&1 &
	reader=$!
	stamp overwrite "$dev" --seed "$seed" "${plan[@]}" ||
		fail "round $r (seed $seed): overwrite of the original"
	wait "$reader" || { cat "$w/concurrent.log"; fail "round $r (seed $seed): image read during the overwrite differs"; }
	cat "$w/concurrent.log"
	[ "$(snap_info "$dev" error_code)" = 0 ] || fail "round $r (seed $seed): snapshot reports an error"
	stamp verify "$img" --seq 0 --seed "$fill_seed" ||
		fail "round $r (seed $seed): the image is not the content at the take"
	if [ "$r" = 1 ]; then
		echo 3 >/proc/sys/vm/drop_caches
		stamp verify "$img" --seq 0 --seed "$fill_seed" --buffered ||
			fail "round $r (seed $seed): buffered reads of the image differ"
	fi
	stamp verify "$dev" --plan "$seed" --fill-seed "$fill_seed" "${plan[@]}" ||
		fail "round $r (seed $seed): the original lost or misplaced a write"
	# Image writes: every chunk in memory, then stored again in its place.
	stamp fill "$img" --seed "$seed" --seq 1 || fail "round $r (seed $seed): image write"
	stamp verify "$img" --seed "$seed" --seq 1 || fail "round $r (seed $seed): image read after image writes"
	[ "$(snap_info "$dev" error_code)" = 0 ] || fail "round $r (seed $seed): snapshot error after image writes"
	stamp verify "$dev" --plan "$seed" --fill-seed "$fill_seed" "${plan[@]}" ||
		fail "round $r (seed $seed): image writes changed the original"
	snap_destroy "$id"
	[ -b "$storage" ] || rm -f "$storage"
	stamp restore "$dev" --seed "$seed" --fill-seed "$fill_seed" "${plan[@]}" ||
		fail "round $r (seed $seed): restore"
done
stamp verify "$dev" --seq 0 --seed "$fill_seed" || fail "original after the last restore"
exit 0
