# SPDX-License-Identifier: GPL-2.0
# The demo, run inside the VM by scripts/main.sh: an ext4 file system on a
# loop device is snapshotted while it is being written, backed up in full
# (restore point 1), changed, backed up incrementally (restore point 2: only
# the changed blocks are stored), and each point is restored onto a new
# device whose files match the moment of its snapshot.
set -euo pipefail
blksnap=$BLKSNAP_TOOLS/blksnap
show() { echo "+ $*"; "$@"; }
step() { echo; echo "== $*"; }

step "load the module"
show insmod "$BLKSNAP_MODULE" diff_storage_minimum=65536
show "$blksnap" version

step "a 1 GiB loop device with ext4 and 200 MiB of files"
truncate -s 1G /tmp/disk /tmp/disk2
dev=$(losetup --show -f /tmp/disk)
new=$(losetup --show -f /tmp/disk2)
show mkfs.ext4 -q "$dev"
mkdir -p /tmp/mnt /tmp/restored /tmp/backups
show mount "$dev" /tmp/mnt
for i in $(seq 1 20); do
	dd if=/dev/urandom of=/tmp/mnt/file$i bs=1M count=10 status=none
done
sync
(cd /tmp/mnt && sha256sum file*) >/tmp/sums1

step "full backup, taken while a writer keeps appending to a log"
(while :; do date >>/tmp/mnt/log; sleep 0.05; done) &
writer=$!
: >/tmp/diff
show "$blksnap" backup -d "$dev" -o /tmp/backups -s /tmp/diff -l 512M
kill $writer
show "$blksnap" cbtinfo -d "$dev"

step "change about 1% of the blocks"
for i in 3 7 11; do
	dd if=/dev/urandom of=/tmp/mnt/file$i bs=1M count=3 conv=notrunc status=none
done
echo "written after the full backup" >/tmp/mnt/new-file
sync
(cd /tmp/mnt && sha256sum file* new-file) >/tmp/sums

step "incremental backup: a new restore point that stores only the changed blocks"
show "$blksnap" backup -d "$dev" -o /tmp/backups -s /tmp/diff -l 512M --incremental
show "$blksnap" backup list -o /tmp/backups
show ls -ls /tmp/backups

step "restore the latest point onto a new device and check the files"
backups=/tmp/backups/$(basename "$dev")
show "$blksnap" restore --backup "$backups" -d "$new"
show fsck.ext4 -fn "$new" 2>&1 | tail -n 1
show mount -o ro "$new" /tmp/restored
(cd /tmp/restored && show sha256sum -c --quiet /tmp/sums) && echo "all files match the moment of the incremental snapshot"
show umount /tmp/restored

step "restore the older point, the full backup, and check the files"
show "$blksnap" verify --backup "$backups" --point 1
show "$blksnap" restore --backup "$backups" --point 1 -d "$new"
show mount -o ro "$new" /tmp/restored
(cd /tmp/restored && show sha256sum -c --quiet /tmp/sums1) && [ ! -e /tmp/restored/new-file ] &&
	echo "all files match the moment of the full backup's snapshot"

step "clean up"
show umount /tmp/restored /tmp/mnt
show "$blksnap" detach -d "$dev"
show rmmod blksnap
losetup -d "$dev" "$new"
