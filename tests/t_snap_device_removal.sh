# SPDX-License-Identifier: GPL-2.0
# A device in a taken snapshot goes away (a deleted partition, a removed loop
# device): nothing hangs, the image fails, is gone, or still holds the
# content at the take, destroy succeeds, and the module unloads.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w

# after_removal ID DEV IMAGE BEFORE: the snapshot lost DEV; report what the
# snapshot says and check that the image never returns wrong data.
after_removal() {
	local id=$1 dev=$2 img=$3 before=$4 out corrupted= rc _
	for _ in 1 2 3; do
		out=$(timeout -k 5 30 $BLKSNAP snapshot_waitevent -i "$id" -t 1000 2>&1)
		echo "waitevent: $out"
		case $out in *corrupted*) corrupted=1; break ;; esac
	done
	if [ ! -e "$img" ]; then
		echo "the image went away with $dev"
	else
		timeout -k 5 60 dd if="$img" of="$w/read" bs=1M iflag=direct status=none
		rc=$?
		case $rc in
		0)
			cmp "$w/read" "$before" || fail "the image of a removed device returns wrong data"
			echo "the image still holds the content at the take"
			;;
		124 | 137) fail "reading the image hung" ;;
		*) echo "reading the image fails" ;;
		esac
	fi
	[ -n "$corrupted" ] && echo "the snapshot reported itself corrupted"
	rm -f "$w/read"
}

step "a partition in the snapshot is deleted"
snap_loop disk 128M -P
printf 'label: gpt\n,32M\n,32M\n' | sfdisk -q "$disk" || fail "sfdisk"
partx -u "$disk" 2>/dev/null
part=${disk}p1
for _ in $(seq 1 50); do [ -b "$part" ] && break; sleep 0.1; done
[ -b "$part" ] || fail "no $part"
fill_random "$part" || fail "fill $part"
dd if="$part" of="$w/before1" bs=1M iflag=direct status=none || fail "copy $part"
: >"$w/diff1"
snap_create id1 "$w/diff1" 64M "$part"
snap_take "$id1"
img1=$(image_of "$part")
dd if="$img1" of=/dev/null bs=1M count=4 iflag=direct status=none || fail "image unreadable"
dd if=/dev/urandom of="$part" bs=1M seek=8 count=4 oflag=direct status=none || fail "write $part"
if out=$(delpart "$disk" 1 2>&1); then
	[ ! -e "/sys/class/block/$(basename "$part")" ] || fail "partition still there"
	after_removal "$id1" "$part" "$img1" "$w/before1"
	removed=1
else
	echo "delpart refused while the partition is in a snapshot: $out"
	removed=
fi
timeout -k 5 60 $BLKSNAP snapshot_destroy -i "$id1" || fail "destroy after the partition went away"
sleep 0.5
[ ! -e "$img1" ] || fail "image left after destroy"
[ -n "$removed" ] || delpart "$disk" 1 || fail "delpart after destroy"

step "a loop device in the snapshot is detached and removed"
snap_loop dev 64M
dd if=/dev/urandom of="$dev" bs=1M count=16 oflag=direct status=none || fail "fill $dev"
dd if="$dev" of="$w/before2" bs=1M iflag=direct status=none || fail "copy $dev"
: >"$w/diff2"
snap_create id2 "$w/diff2" 64M "$dev"
snap_take "$id2"
img2=$(image_of "$dev")
dd if=/dev/urandom of="$dev" bs=1M seek=4 count=4 oflag=direct status=none || fail "write $dev"
losetup -d "$dev" || fail "losetup -d"
# LOOP_CTL_REMOVE deletes the gendisk (EBUSY while something holds it open).
loop_remove() {
	python3 -c '
import errno, fcntl, os, sys
fd = os.open("/dev/loop-control", os.O_RDWR)
try:
    fcntl.ioctl(fd, 0x4C81, int(sys.argv[1]))
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])' "${dev#/dev/loop}"
}
sleep 0.5
res=$(loop_remove)
echo "LOOP_CTL_REMOVE: $res"
if [ "$res" = ok ]; then
	[ ! -e "/sys/class/block/$(basename "$dev")" ] || fail "loop device still there"
fi
# Whether removed or only cleared, the original is gone from under the image.
after_removal "$id2" "$dev" "$img2" "$w/before2"
timeout -k 5 60 $BLKSNAP snapshot_destroy -i "$id2" || fail "destroy after the loop device went away"
sleep 0.5
[ ! -e "$img2" ] || fail "image left after destroy"
if [ "$res" != ok ]; then
	$BLKSNAP detach -d "$dev" 2>/dev/null
	echo "LOOP_CTL_REMOVE after destroy: $(loop_remove)"
fi

step "a device detached and attached again while a snapshot shows its image"
# The older snapshot keeps the image /dev/blksnap-MAJ-MIN; a new snapshot of
# the device cannot show its own under that name until the older one goes.
snap_loop dev3 64M
fill_random "$dev3" || fail "fill $dev3"
dd if="$dev3" of="$w/before3" bs=1M iflag=direct status=none || fail "copy $dev3"
snap_create_file id3 "$w/diff3" 64M "$dev3"
snap_take "$id3"
img3=$(image_of "$dev3")
$BLKSNAP detach -d "$dev3" || fail "detach $dev3 while in a taken snapshot"
snap_create_file id4 "$w/diff4" 64M "$dev3"
expect_errno EBUSY $BLKSNAP snapshot_take -i "$id4"
[ -b "$img3" ] || fail "the older snapshot's image went away"
snap_destroy "$id3"
snap_take "$id4"
dd if=/dev/urandom of="$dev3" bs=1M seek=4 count=4 oflag=direct status=none || fail "write $dev3"
cmp <(dd if="$img3" bs=1M iflag=direct status=none) "$w/before3" ||
	fail "the new image does not hold the content at its take"
snap_destroy "$id4"
$BLKSNAP detach -d "$dev3" || fail "detach $dev3"

step "the module unloads"
rmmod blksnap || fail "rmmod after the devices went away"
exit 0
