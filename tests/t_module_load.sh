# SPDX-License-Identifier: GPL-2.0
# The module loads, creates the control device with the spec's parameters,
# and unloads cleanly.
. tests/lib.sh

insmod "$BLKSNAP_MODULE" || fail "insmod"
[ -c /dev/blksnap-control ] || fail "no /dev/blksnap-control"
grep -q '^blksnap ' /proc/modules || fail "not in /proc/modules"
declare -A defaults=(
	[tracking_block_minimum_shift]=16 [tracking_block_maximum_count]=2097152
	[tracking_block_maximum_shift]=26 [chunk_minimum_shift]=18
	[chunk_maximum_count_shift]=40 [chunk_maximum_shift]=26
	[chunk_maximum_in_queue]=256 [diff_storage_minimum]=2097152
)
for p in "${!defaults[@]}"; do
	v=$(cat "/sys/module/blksnap/parameters/$p") || fail "no parameter $p"
	[ "$v" = "${defaults[$p]}" ] || fail "$p is $v, expected ${defaults[$p]}"
done
rmmod blksnap || fail "rmmod"
[ ! -e /dev/blksnap-control ] || fail "/dev/blksnap-control left behind"
grep -q '^blksnap ' /proc/modules && fail "still loaded"

step "load with parameters"
insmod "$BLKSNAP_MODULE" chunk_minimum_shift=20 diff_storage_minimum=4096 || fail "insmod with parameters"
[ "$(cat /sys/module/blksnap/parameters/chunk_minimum_shift)" = 20 ] || fail "parameter not set"
rmmod blksnap || fail "rmmod"
exit 0
