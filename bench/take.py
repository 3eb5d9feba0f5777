#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Take a created snapshot and print how long the ioctl took, in ns.

usage: take.py SNAPSHOT_ID
Times only BLKSNAP_IOCTL_SNAPSHOT_TAKE itself: the CLI's process start-up,
which under TCG costs more than the take, stays out of the figure.
"""
import ctypes
import os
import sys
import time
import uuid

# _IOW('V', 3, struct blksnap_uuid): see uapi/linux/blksnap.h.
IOCTL_TAKE = (1 << 30) | (16 << 16) | (ord("V") << 8) | 3

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def main():
    sid = ctypes.create_string_buffer(uuid.UUID(sys.argv[1]).bytes, 16)
    fd = os.open("/dev/blksnap-control", os.O_RDWR)
    start = time.perf_counter_ns()
    rc = libc.ioctl(fd, IOCTL_TAKE, ctypes.addressof(sid))
    elapsed = time.perf_counter_ns() - start
    if rc < 0:
        e = ctypes.get_errno()
        sys.exit(f"take: {os.strerror(e)}")
    print(elapsed)


main()
