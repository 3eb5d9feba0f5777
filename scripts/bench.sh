#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Benchmark blksnap in the VM, in one boot: fio on a virtio disk and on a
# loop device, raw, with the filter attached, with a snapshot held, and with
# dm-snapshot; snapshot take latency; the module's memory (bench/README.md).
# Usage: bench.sh [--quick]
# Writes bench/out/ (--quick: bench/out/quick/): results.md, results.json,
# ratios.png; a full run also writes bench/RESULTS.md. --quick uses tiny
# devices and 1 s runs, to check in CI that the benchmark still works: it
# fails on errors, never on figures.
# For working on the benchmark or on the data path:
# BLKSNAP_BENCH_KDIR=DIR skips the build and boots the kernel built in DIR
# with the module and tools already built; BLKSNAP_BENCH_PARTS runs only
# some of "memory take virtio loop", or "profile": perf profiles of
# tracked writes, first-touch writes, rewrites and copied-image reads,
# blksnap and dm-snapshot (profile-*.txt);
# BLKSNAP_BENCH_REPS changes the number of repetitions. Such runs never
# write bench/RESULTS.md.
set -euo pipefail

. "$(dirname "$0")/env.sh"
mode=full
case "${1:-}" in
"") ;;
--quick) mode=quick ;;
*)
	echo "usage: $0 [--quick]" >&2
	exit 2
	;;
esac

if [ -n "${BLKSNAP_BENCH_KDIR:-}" ]; then
	kdir=$BLKSNAP_BENCH_KDIR
else
	kdir=$(bash "$TOP/scripts/build.sh" fast)
fi

# fio needs System V shared memory, which the fast kernel leaves out.
shim=$BLKSNAP_CACHE/bench/fio-noshm.so
mkdir -p "$(dirname "$shim")"
gcc -O2 -Wall -shared -fPIC -o "$shim" "$TOP/bench/fio-noshm.c"

# Two virtio disks: the origin and the storage (blksnap's difference
# storage, dm-snapshot's exception store), in MiB.
if [ $mode = full ]; then
	disk_mb=1024 cow_mb=1280 timeout=10800 report_dir=$TOP/bench/out
else
	disk_mb=32 cow_mb=48 timeout=1200 report_dir=$TOP/bench/out/quick
fi
out=$BLKSNAP_CACHE/results-bench-$mode
env_vars="BLKSNAP_MODULE=$BLKSNAP_CACHE/module-fast/blksnap.ko \
BLKSNAP_TOOLS=$TOP/tools/target/release BENCH_MODE=$mode BENCH_OUT=/run/out \
BENCH_FIO_PRELOAD=$shim BENCH_VIRTIO_MB=$disk_mb BENCH_VIRTIO_COW_MB=$cow_mb"
partial=
if [ -n "${BLKSNAP_BENCH_PARTS:-}${BLKSNAP_BENCH_REPS:-}" ]; then
	partial=1
	parts=${BLKSNAP_BENCH_PARTS:-memory take virtio loop}
	# The kernel command line carries the command: no spaces in a value.
	env_vars+=" BENCH_PARTS=${parts// /,} BENCH_REPS=${BLKSNAP_BENCH_REPS:-}"
fi
echo "== VM: benchmark ($mode)" >&2
BLKSNAP_VM_DISKS="${disk_mb}M ${cow_mb}M" \
	bash "$TOP/scripts/vm.sh" "$kdir" "$out" "$timeout" "env $env_vars bash bench/guest-bench.sh"

# Profiles (BLKSNAP_BENCH_PARTS=profile) go beside the report.
mkdir -p "$report_dir"
for f in "$out"/profile-*.txt; do
	[ -e "$f" ] && cp "$f" "$report_dir/"
done

args=(--mode "$mode" "$out" "$report_dir")
[ $mode = full ] && [ -z "$partial" ] && args+=(--results-md "$TOP/bench/RESULTS.md")
# The chart needs Debian's python3-matplotlib (setup.sh), which a python3
# earlier on PATH (pyenv, a venv) may not see.
python=python3
python3 -c 'import matplotlib' 2>/dev/null || python=/usr/bin/python3
"$python" "$TOP/bench/report.py" "${args[@]}"
