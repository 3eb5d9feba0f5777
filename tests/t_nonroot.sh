# SPDX-License-Identifier: GPL-2.0
# Without CAP_SYS_ADMIN the filter ioctls are refused, even on an open device.
. tests/lib.sh
load_module
dev=$(new_loop 32M)
for op in attach detach ctl; do
	got=$(python3 tests/blkfilter.py --uid 65534 "$op" "$dev" blksnap)
	echo "$op as nobody -> $got"
	[ "$got" = EACCES ] || fail "$op as nobody gave $got"
done
[ -z "$(filter_of "$dev")" ] || fail "filter attached by nobody"
exit 0
