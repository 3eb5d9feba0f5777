# SPDX-License-Identifier: GPL-2.0
# Writes to a snapshot image, chunk aligned, across chunk borders, buffered
# at odd byte offsets, before and after copy-on-write of the same chunk: the
# image reads them back, the original never sees them, and they are marked
# in both CBT tables while writes to the original reach the read table only
# at the next take.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 64M # 1024 tracking blocks of 64 KiB, 256 chunks of 256 KiB
fill_random "$dev" || fail "fill"
dd if="$dev" of="$w/orig" bs=1M iflag=direct status=none || fail "copy"
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
cp "$w/orig" "$w/img_want"
cp "$w/orig" "$w/orig_want"
: >"$w/diff"
snap_create id "$w/diff" 64M "$dev"
snap_take "$id"
img=$(image_of "$dev")
cn1=$(cbt_field "$dev" changes_number)
cbt_expect "$dev"

n=0
# put TARGET OFFSET LENGTH [direct]: write LENGTH random bytes at byte
# OFFSET of the image or the original, and the same into what it should hold.
put() {
	local target=$1 off=$2 len=$3 flags=seek_bytes dev_path want
	n=$((n + 1))
	head -c "$len" /dev/urandom >"$w/p$n"
	[ "${4:-}" = direct ] && flags+=,direct
	case $target in
	image) dev_path=$img want=$w/img_want ;;
	orig) dev_path=$dev want=$w/orig_want ;;
	esac
	dd if="$w/p$n" of="$dev_path" bs=256K seek="$off" oflag="$flags" conv=notrunc status=none ||
		fail "write of $len bytes at $off to the $target"
	dd if="$w/p$n" of="$want" bs=256K seek="$off" oflag=seek_bytes conv=notrunc status=none
}

K=1024 M=$((1024 * 1024))
step "image writes"
put image $((1 * M)) $((256 * K)) direct                  # one whole chunk
put image $((9 * 256 * K - 2 * K)) $((4 * K)) direct      # across a chunk border
put image $((40 * M + 100 * K)) $((300 * K)) direct       # unaligned, two chunks
put image $((5 * M + 123)) 1000                           # buffered, odd offsets
put image $((6 * M - 2500 + 7)) 5000                      # buffered, across a border
step "image then original in one chunk, original then image in another"
put image $((12 * M + 64 * K)) $((64 * K)) direct
put orig $((12 * M)) $((256 * K)) direct
put orig $((16 * M)) $((128 * K)) direct
put image $((16 * M + 4 * K)) $((8 * K)) direct
put orig $((32 * M)) $((1 * M)) direct                    # original only
sync
blockdev --flushbufs "$img" "$dev"

cmp <(dd if="$img" bs=1M iflag=direct status=none) "$w/img_want" ||
	fail "the image does not read back what was written to it"
cmp <(dd if="$dev" bs=1M iflag=direct status=none) "$w/orig_want" ||
	fail "image writes reached the original, or original writes were lost"
echo 3 >/proc/sys/vm/drop_caches
cmp "$img" "$w/img_want" || fail "buffered reads of the image differ"
[ "$(snap_info "$dev" error_code)" = 0 ] || fail "snapshot reports an error"

step "CBT: image writes are in the read table at once, original writes are not"
image_blocks=(16-19 35-36 641-646 80 95-96 193 256)
orig_blocks=(192-195 256-257 512-527)
specs=()
# Marked as changes of the current snapshot (upstream semantics).
for b in "${image_blocks[@]}"; do specs+=("$b=$cn1"); done
cbt_expect "$dev" "${specs[@]}"
snap_destroy "$id"

step "CBT: the next take has all of them with its number"
: >"$w/diff2"
snap_create id "$w/diff2" 64M "$dev"
snap_take "$id"
cn2=$(cbt_field "$dev" changes_number)
[ "$cn2" = $((cn1 + 1)) ] || fail "changes_number $cn1 then $cn2"
specs=()
for b in "${orig_blocks[@]}" "${image_blocks[@]}"; do specs+=("$b=$cn2"); done
cbt_expect "$dev" "${specs[@]}"
cmp <(dd if="$(image_of "$dev")" bs=1M iflag=direct status=none) "$w/orig_want" ||
	fail "the next snapshot's image is not the original"
snap_destroy "$id"
exit 0
