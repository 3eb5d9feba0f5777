#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Concurrency stress (tests/stress.py): writers of every kind on two devices
# the whole time, image readers, and take/verify/destroy cycles of a
# snapshot of both; every image must be the devices at one instant of its
# take, and CBT must mark every change between two takes. Even cycles keep
# the difference storage on a block device, odd ones in a file.
# BLKSNAP_STRESS_ROUNDS cycles (default 5); replay with BLKSNAP_STRESS_SEED.
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
snap_loop dev1 16M
snap_loop dev2 16M
snap_loop storage_dev 64M
rounds=${BLKSNAP_STRESS_ROUNDS:-5}
seed=${BLKSNAP_STRESS_SEED:-$(($(date +%s%N) / 1000 % 1000000000))}
echo "stress: $rounds cycles, seed $seed" \
	"(replay: BLKSNAP_STRESS_SEED=$seed BLKSNAP_STRESS_ROUNDS=$rounds)"
for d in "$dev1" "$dev2"; do
	python3 tests/stamp.py fill "$d" --seed 16 || fail "fill $d"
	$BLKSNAP attach -d "$d" || fail "attach $d"
	on_exit $BLKSNAP detach -d "$d"
done
on_exit snap_destroy_all
python3 tests/stress.py --blksnap "$BLKSNAP" --storage "$w" --storage-device "$storage_dev" \
	--fill-seed 16 --seed "$seed" --rounds "$rounds" "$dev1" "$dev2" || fail "seed $seed"
exit 0
