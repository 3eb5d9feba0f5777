#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run all tests: host unit tests (cargo test), then the VM suite (tests/t_*.sh)
# on the fast kernel, or on the debug kernel (KASAN, lockdep, kmemleak) with
# --debug. Further arguments select test scripts. BLKSNAP_TEST_TIMEOUT sets
# the seconds each test may take; BLKSNAP_INTEGRITY_*, BLKSNAP_STRESS_*,
# BLKSNAP_FUZZ_* and BLKSNAP_BACKUP_* are passed to the tests.
# The last line is "N passed, N failed".
set -euo pipefail

. "$(dirname "$0")/env.sh"
flavour=fast
if [ "${1:-}" = --debug ]; then
	flavour=debug
	shift
fi

kdir=$(bash "$TOP/scripts/build.sh" "$flavour")

echo "== host: cargo test"
host_rc=0
BLKSNAP_KERNEL_HEADERS=$kdir/usr/include \
	cargo test -q --manifest-path "$TOP/tools/Cargo.toml" 2>&1 || host_rc=1

echo "== VM: $flavour kernel"
out=$BLKSNAP_CACHE/results-$flavour
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/t_*.sh)
per_test=600
[ $flavour = debug ] && per_test=900
per_test=${BLKSNAP_TEST_TIMEOUT:-$per_test}
env_vars="BLKSNAP_MODULE=$BLKSNAP_CACHE/module-$flavour/blksnap.ko \
BLKSNAP_TOOLS=$TOP/tools/target/release BLKSNAP_TEST_TIMEOUT=$per_test \
BLKSNAP_FLAVOUR=$flavour"
# Seeds and sizes of the randomised tests reach the guest.
for v in ${!BLKSNAP_INTEGRITY_@} ${!BLKSNAP_STRESS_@} ${!BLKSNAP_FUZZ_@} ${!BLKSNAP_BACKUP_@}; do
	env_vars+=" $v=${!v}"
done
bash "$TOP/scripts/vm.sh" "$kdir" "$out" $(( ${#tests[@]} * per_test + 60 )) \
	"env $env_vars bash tests/run.sh ${tests[*]}; rc=\$?; bash tests/kmemleak.sh; exit \$rc"

python3 "$TOP/scripts/report.py" "$out" "${#tests[@]}" "$host_rc"
