# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the VM tests, sourced by each tests/t_*.sh. Each test runs as
# root in the VM, from the checkout, with a fresh /tmp of its own.

set -u
BLKSNAP=$BLKSNAP_TOOLS/blksnap
KSFT_SKIP=4

cleanups=()
# Run "$@" when the test ends, last registered first.
on_exit() {
	cleanups=("$*" "${cleanups[@]}")
}
run_cleanups() {
	local c
	for c in "${cleanups[@]}"; do eval "$c" >/dev/null 2>&1; done
}
trap run_cleanups EXIT

# Each test reads only its own kernel messages (the console keeps them all).
dmesg -C

fail() {
	echo "FAIL: $*"
	exit 1
}

# Log a step of the test.
step() {
	echo "$*"
}

load_module() {
	insmod "$BLKSNAP_MODULE" "$@" || fail "insmod $BLKSNAP_MODULE"
	on_exit rmmod blksnap
	[ -c /dev/blksnap-control ] || fail "no /dev/blksnap-control"
}

# new_loop SIZE [losetup options]: a loop device over a sparse file in /tmp.
new_loop() {
	local size=$1 file dev
	shift
	file=$(mktemp /tmp/disk.XXXXXX)
	truncate -s "$size" "$file"
	dev=$(losetup --show -f "$@" "$file") || fail "losetup $file"
	on_exit losetup -d "$dev"
	echo "$dev"
}

# The filter attached to a block device, from sysfs.
filter_of() {
	local name
	name=$(basename "$(readlink -f "$1")")
	cat "/sys/class/block/$name/filter"
}

# expect_errno ERRNO COMMAND...: the command must fail and name ERRNO.
expect_errno() {
	local want=$1 out
	shift
	if out=$("$@" 2>&1); then
		fail "'$*' succeeded, expected $want"
	fi
	echo "$out"
	grep -qw "$want" <<<"$out" || fail "'$*' did not fail with $want"
}

# "major:minor" of a block device.
dev_id() {
	printf '%d:%d\n' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"
}
