# SPDX-License-Identifier: GPL-2.0
# Overflow: writing far more than the storage limit corrupts the snapshot
# (a corrupted event with ENOSPC, err_code 28 and error_code -28, image
# reads fail with EIO) while the original keeps every write, and destroy
# still works.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=8192
snap_workdir w
snap_loop dev 128M
: >"$w/diff"
head -c 48M /dev/urandom >"$w/pat"
head -c 8M /dev/urandom >"$w/pat2"

snap_create id "$w/diff" 8M "$dev"
snap_take "$id"
img=$(image_of "$dev")
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "error before any write"

step "write 48 MiB through a snapshot limited to 8 MiB"
dd if="$w/pat" of="$dev" bs=1M oflag=direct status=none || fail "writes to the original failed"

step "events"
corrupted= no_space= timeouts=0
while [ -z "$corrupted" ] && [ $timeouts -lt 5 ]; do
	out=$($BLKSNAP snapshot_waitevent -i "$id" -t 2000) || fail "snapshot_waitevent failed"
	echo "$out"
	case $out in
	*event=corrupted*)
		corrupted=1
		grep -qx "dev_id_mj=$(dev_id "$dev" | cut -d: -f1)" <<<"$out" &&
			grep -qx "dev_id_mn=$(dev_id "$dev" | cut -d: -f2)" <<<"$out" ||
			fail "corrupted event for another device"
		grep -qx 'err_code=28' <<<"$out" || fail "corrupted event without ENOSPC (28)"
		;;
	*event=no_space*) no_space=1 ;;
	result=timeout) timeouts=$((timeouts + 1)) ;;
	*) fail "unknown event: $out" ;;
	esac
done
[ -n "$corrupted" ] || fail "no corrupted event"
[ -n "$no_space" ] || echo "note: no no_space event before the corrupted one"

[ "$(snap_info "$dev" error_code)" = -28 ] || fail "snapshot_info error_code is not -28"
step "the image fails with EIO"
if out=$(dd if="$img" of=/dev/null bs=1M count=1 iflag=direct 2>&1); then
	fail "direct read of the overflowed image succeeded"
fi
echo "$out"
grep -q "Input/output error" <<<"$out" || fail "the image read failed other than with EIO"
dd if="$img" of=/dev/null bs=1M status=none 2>/dev/null && fail "buffered read of the overflowed image succeeded"

step "the original keeps every write, also after the overflow"
dd if="$w/pat2" of="$dev" bs=1M seek=64 oflag=direct status=none || fail "write after the overflow"
want=$({ cat "$w/pat"; head -c 16M /dev/zero; cat "$w/pat2"; head -c 56M /dev/zero; } | sha256sum | cut -d' ' -f1)
[ "$(dev_sum "$dev")" = "$want" ] || fail "the original lost writes"
snap_destroy "$id"
echo 3 >/proc/sys/vm/drop_caches
[ "$(dev_sum "$dev")" = "$want" ] || fail "the original changed at destroy"
exit 0
