# SPDX-License-Identifier: GPL-2.0
# Deleting a loop device while the filter is attached detaches it cleanly.
. tests/lib.sh
insmod "$BLKSNAP_MODULE" || fail "insmod"
file=/tmp/disk
truncate -s 32M $file
dev=$(losetup --show -f $file) || fail "losetup"
id=$(dev_id "$dev")
$BLKSNAP attach -d "$dev" || fail "attach"
dd if=/dev/zero of="$dev" bs=1M count=4 oflag=direct status=none
losetup -d "$dev" || fail "losetup -d"
# LOOP_CTL_REMOVE deletes the gendisk.
python3 -c '
import fcntl, os, sys
fd = os.open("/dev/loop-control", os.O_RDWR)
fcntl.ioctl(fd, 0x4C81, int(sys.argv[1]))' "${dev#/dev/loop}" || fail "LOOP_CTL_REMOVE"
[ ! -e "/sys/class/block/$(basename "$dev")" ] || fail "device still there"
dmesg | grep -q "tracker detached from $id\$" || fail "tracker not detached"
rmmod blksnap || fail "rmmod after the device went away"
exit 0
