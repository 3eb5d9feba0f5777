# SPDX-License-Identifier: GPL-2.0
# CBTINFO, CBTMAP and CBTDIRTY: geometry from the parameters, a new
# generation per attach, partitions in their own size, and every malformed
# request refused with an errno.
. tests/lib.sh
load_module
dev=$(new_loop 64M -P)
printf 'label: gpt\nstart=2048,size=40960\n' | sfdisk -q "$dev" || fail "sfdisk"
partx -u "$dev" 2>/dev/null

# json_field JSON FIELD
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# expect_info DEV CAPACITY BLOCK_SIZE BLOCK_COUNT
expect_info() {
	local j
	j=$($BLKSNAP cbtinfo --json -d "$1") || fail "cbtinfo $1"
	echo "$1: $j"
	[ "$(json_field "$j" device_capacity)" = "$2" ] || fail "capacity of $1"
	[ "$(json_field "$j" block_size)" = "$3" ] || fail "block size of $1"
	[ "$(json_field "$j" block_count)" = "$4" ] || fail "block count of $1"
	[ "$(json_field "$j" changes_number)" = 0 ] || fail "changes number of $1"
}

$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
expect_info "$dev" 67108864 65536 1024
gen1=$($BLKSNAP cbtinfo --json -d "$dev" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation_id"])')
[ "$gen1" != 00000000000000000000000000000000 ] || fail "zero generation id"

step "the table reads back as 1024 zero bytes before any snapshot"
dd if=/dev/urandom of="$dev" bs=64k count=16 oflag=direct status=none
$BLKSNAP readcbtmap -d "$dev" -f /tmp/map || fail "readcbtmap"
[ "$(stat -c %s /tmp/map)" = 1024 ] || fail "table size"
cmp /tmp/map <(head -c 1024 /dev/zero) || fail "table not zero before a take"
$BLKSNAP markdirtyblock -d "$dev" -r 0:128 4096:1 || fail "markdirtyblock"

step "malformed requests"
python3 tests/cbt_bad_input.py "$dev" 1024 || fail "bad input"

step "a new attach is a new generation"
$BLKSNAP detach -d "$dev" || fail "detach"
$BLKSNAP attach -d "$dev" || fail "re-attach"
gen2=$($BLKSNAP cbtinfo --json -d "$dev" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation_id"])')
[ "$gen1" != "$gen2" ] || fail "generation id reused"
$BLKSNAP detach -d "$dev" || fail "detach"

step "a partition is tracked in its own size"
$BLKSNAP attach -d "${dev}p1" || fail "attach partition"
expect_info "${dev}p1" $((40960 * 512)) 65536 320
$BLKSNAP detach -d "${dev}p1" || fail "detach partition"

step "block size from the parameters"
rmmod blksnap || fail "rmmod"
insmod "$BLKSNAP_MODULE" tracking_block_minimum_shift=12 || fail "insmod"
$BLKSNAP attach -d "$dev" || fail "attach"
expect_info "$dev" 67108864 4096 16384
$BLKSNAP detach -d "$dev"
echo 100 >/sys/module/blksnap/parameters/tracking_block_maximum_count
$BLKSNAP attach -d "$dev" || fail "attach"
expect_info "$dev" 67108864 1048576 64
$BLKSNAP detach -d "$dev"
exit 0
