#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# PID 1 of the test VM. The root file system is the host's, read-only over
# 9p; the kernel passes BLKSNAP_* variables from its command line. Runs the
# command in BLKSNAP_CMD with its output on the console and in the shared
# output directory, then reboots, which ends QEMU (-no-reboot).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp LANG=C

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Writable scratch over /run and /tmp. The checkout or the cache may live
# under them on the host: bind those back from a view of the host root.
mount -t tmpfs tmpfs /run
mkdir /run/host
mount --bind / /run/host
mount -t tmpfs tmpfs /tmp
for p in "$BLKSNAP_TOP" "$BLKSNAP_CACHE"; do
	case $p in
	/tmp/* | /run/*)
		mkdir -p "$p"
		mount --bind "/run/host$p" "$p"
		;;
	esac
done
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /run/out /dev/pts /dev/shm
mount -t tmpfs tmpfs /dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L blksnap-out /run/out

cd "$BLKSNAP_TOP" || exit 1
status=1
timeout -k 10 "$BLKSNAP_TIMEOUT" bash -c "$BLKSNAP_CMD" </dev/null 2>&1 |
	tee /run/out/output.log
status=${PIPESTATUS[0]}

dmesg >/run/out/dmesg.log
echo "$status" >/run/out/status
sync
# reboot(LINUX_REBOOT_CMD_RESTART): with -no-reboot, QEMU exits.
python3 -c 'import ctypes; ctypes.CDLL(None).reboot(0x01234567)'
