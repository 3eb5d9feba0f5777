# SPDX-License-Identifier: GPL-2.0
# Change tracking across a full and two incremental snapshots: after each
# take the read table marks exactly the blocks written (or marked dirty)
# since the previous take with that take's number, older blocks keep their
# older numbers, changes_number counts the takes, the generation stays.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 64M # 1024 blocks of 64 KiB
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
gen=$(cbt_field "$dev" generation_id)
cn=$(cbt_field "$dev" changes_number)
[ "$(cbt_field "$dev" block_count)" = 1024 ] || fail "block count"
echo "generation $gen, changes_number $cn"

# write_blocks BLOCK...: write each 64 KiB tracking block whole.
write_blocks() {
	local b
	for b in "$@"; do
		dd if=/dev/urandom of="$dev" bs=64K seek="$b" count=1 oflag=direct status=none ||
			fail "write block $b"
	done
}
# write_4k BLOCK OFFSET_KIB: a 4 KiB write inside a block.
write_4k() {
	dd if=/dev/urandom of="$dev" bs=4K seek=$(($1 * 16 + $2 / 4)) count=1 oflag=direct status=none ||
		fail "4k write in block $1"
}
# take N: create and take snapshot N; its changes_number must be one more.
take() {
	local prev=$cn
	: >"$w/diff$1"
	snap_create id "$w/diff$1" 64M "$dev"
	snap_take "$id"
	cn=$(cbt_field "$dev" changes_number)
	echo "take $1: changes_number $cn"
	[ "$cn" = $((prev + 1)) ] || fail "changes_number went from $prev to $cn at take $1"
	[ "$(cbt_field "$dev" generation_id)" = "$gen" ] || fail "new generation at take $1"
	eval "cn$1=$cn"
}

step "full: blocks written since attach"
write_blocks 0 5 17 100 511 1023
write_4k 300 8
take 1
cbt_expect "$dev" 0=$cn1 5=$cn1 17=$cn1 100=$cn1 511=$cn1 1023=$cn1 300=$cn1
snap_destroy "$id"

step "incremental 1: a new set, overlapping the old one"
write_blocks 1 5 200 1022
write_4k 300 60
take 2
cbt_expect "$dev" 0=$cn1 17=$cn1 100=$cn1 511=$cn1 1023=$cn1 \
	1=$cn2 5=$cn2 200=$cn2 1022=$cn2 300=$cn2

step "incremental 2: writes while snapshot 2 lives, after its destroy, marked dirty"
write_blocks 2 17
# Writes during a snapshot go to the write table only.
cbt_expect "$dev" 0=$cn1 17=$cn1 100=$cn1 511=$cn1 1023=$cn1 \
	1=$cn2 5=$cn2 200=$cn2 1022=$cn2 300=$cn2
snap_destroy "$id"
write_blocks 3 600
$BLKSNAP markdirtyblock -d "$dev" -r $((700 * 128)):256 $((900 * 128 + 5)):1 ||
	fail "markdirtyblock"
# CBTDIRTY marks both tables: the read table shows it at once, as a
# change of the latest snapshot (upstream semantics).
cbt_expect "$dev" 0=$cn1 17=$cn1 100=$cn1 511=$cn1 1023=$cn1 \
	1=$cn2 5=$cn2 200=$cn2 1022=$cn2 300=$cn2 700-701=$cn2 900=$cn2
take 3
cbt_expect "$dev" 0=$cn1 100=$cn1 511=$cn1 1023=$cn1 \
	1=$cn2 5=$cn2 200=$cn2 1022=$cn2 300=$cn2 \
	2=$cn3 17=$cn3 3=$cn3 600=$cn3 700-701=$cn3 900=$cn3
snap_destroy "$id"

step "a take with nothing written marks nothing new"
take 4
cbt_expect "$dev" 0=$cn1 100=$cn1 511=$cn1 1023=$cn1 \
	1=$cn2 5=$cn2 200=$cn2 1022=$cn2 300=$cn2 \
	2=$cn3 17=$cn3 3=$cn3 600=$cn3 700-701=$cn3 900=$cn3
snap_destroy "$id"
exit 0
