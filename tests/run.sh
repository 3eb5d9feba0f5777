#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# kselftest-style runner, run inside the test VM: runs each test script given
# (default: tests/t_*.sh), each in its own bash with a timeout, and prints TAP.
# A test exits 0 to pass, 4 to skip, anything else to fail.
# Environment: BLKSNAP_MODULE (path of blksnap.ko), BLKSNAP_TEST_TIMEOUT.
cd "$(dirname "$0")/.." || exit 1
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/t_*.sh)
per_test=${BLKSNAP_TEST_TIMEOUT:-600}

# Whether PATH holds the checkout or the module (a checkout or cache in /tmp
# is bound into the guest's /tmp).
keep() {
	[[ $PWD/ == "$1"/* || $BLKSNAP_MODULE == "$1"/* ]]
}

echo "TAP version 13"
echo "1..${#tests[@]}"
n=0 failed=0
for t in "${tests[@]}"; do
	n=$((n + 1))
	name=$(basename "$t" .sh)
	name=${name#t_}
	echo "# $name" >/dev/kmsg
	timeout -k 5 "$per_test" bash "$t" >"/tmp/$name.log" 2>&1
	rc=$?
	sed 's/^/# /' "/tmp/$name.log"
	case $rc in
	0) echo "ok $n $name" ;;
	4) echo "ok $n $name # SKIP" ;;
	124 | 137) echo "not ok $n $name # TIMEOUT after ${per_test}s"; failed=$((failed + 1)) ;;
	*) echo "not ok $n $name # exit status $rc"; failed=$((failed + 1)) ;;
	esac
	# A test that failed may leave the module in, and tests that create
	# loop devices in $(...) cannot register their cleanup: the next test
	# starts clean either way.
	if grep -q '^blksnap ' /proc/modules; then
		for id in $("$BLKSNAP_TOOLS/blksnap" snapshot_collect 2>/dev/null); do
			"$BLKSNAP_TOOLS/blksnap" snapshot_destroy -i "$id" 2>/dev/null
		done
		for d in /sys/block/*/filter /sys/block/*/*/filter; do
			[ "$(cat "$d" 2>/dev/null)" = blksnap ] || continue
			dev=$(basename "$(dirname "$d")")
			"$BLKSNAP_TOOLS/blksnap" detach -d "/dev/$dev" 2>/dev/null
		done
		rmmod blksnap 2>/dev/null
	fi
	findmnt -rn -o TARGET | grep '^/tmp/' | sort -r | while read -r m; do
		keep "$m" || umount -l "$m" 2>/dev/null
	done
	losetup -D 2>/dev/null
	for f in /tmp/*; do
		[[ $f == *.log ]] || keep "$f" || rm -rf --one-file-system "$f" 2>/dev/null
	done
done
[ $failed -eq 0 ]
