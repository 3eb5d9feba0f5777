# SPDX-License-Identifier: GPL-2.0
# Two partitions of one disk in one snapshot: they share the disk's queue,
# which the take freezes once per member. Both images keep the content of
# the take while both partitions are rewritten.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=8192
snap_workdir w
snap_loop disk 96M -P
printf 'label: gpt\n,32M\n,32M\n' | sfdisk -q "$disk" || fail "sfdisk"
partx -u "$disk" 2>/dev/null
for p in 1 2; do
	for _ in $(seq 1 50); do [ -b "${disk}p$p" ] && break; sleep 0.1; done
	[ -b "${disk}p$p" ] || fail "no ${disk}p$p"
	fill_random "${disk}p$p" || fail "fill ${disk}p$p"
	dev_sum "${disk}p$p" >"$w/before$p"
done

: >"$w/diff"
snap_create id "$w/diff" 96M "${disk}p1" "${disk}p2"
snap_take "$id"
step "rewrite both partitions"
for p in 1 2; do
	fill_random "${disk}p$p" || fail "rewrite p$p"
done
for p in 1 2; do
	[ "$(snap_info "${disk}p$p" error_code)" = 0 ] || fail "snapshot of p$p reports an error"
	[ "$(dev_sum "$(image_of "${disk}p$p")")" = "$(cat "$w/before$p")" ] ||
		fail "the image of p$p is not the content at the take"
	[ "$(dev_sum "${disk}p$p")" != "$(cat "$w/before$p")" ] || fail "p$p was not rewritten"
done
snap_destroy "$id"
exit 0
