# SPDX-License-Identifier: GPL-2.0
# The demo, run inside the VM by scripts/main.sh.
set -euo pipefail
blksnap=$BLKSNAP_TOOLS/blksnap
show() { echo "+ $*"; "$@"; }

show insmod "$BLKSNAP_MODULE"
show "$blksnap" version
truncate -s 256M /tmp/disk
dev=$(losetup --show -f /tmp/disk)
show mkfs.ext4 -q "$dev"
show "$blksnap" attach -d "$dev"
show "$blksnap" cbtinfo -d "$dev"
echo "+ cat /sys/class/block/${dev#/dev/}/filter"
cat "/sys/class/block/${dev#/dev/}/filter"
mkdir -p /tmp/mnt
show mount "$dev" /tmp/mnt
show dd if=/dev/urandom of=/tmp/mnt/data bs=1M count=32 status=none
show sha256sum /tmp/mnt/data
show umount /tmp/mnt
show "$blksnap" detach -d "$dev"
show rmmod blksnap
dmesg | grep 'blksnap: '
