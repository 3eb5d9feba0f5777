#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Issue raw block device filter ioctls, for tests that need what the blksnap
CLI never sends: other filter names, bad pointers, dropped privileges.

usage: blkfilter.py [--uid UID] attach|detach|ctl DEVICE NAME [CMD]
Prints "ok" or the errno name, and exits 0 either way (1 on usage errors).
"""
import argparse
import errno
import fcntl
import os
import struct

# _IOWR(0x12, nr, size): direction read|write = 3.
def iowr(nr, size):
    return (3 << 30) | (size << 16) | (0x12 << 8) | nr

BLKFILTER_ATTACH = iowr(142, 48)
BLKFILTER_DETACH = iowr(143, 32)
BLKFILTER_CTL = iowr(144, 48)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--uid", type=int, help="drop to this user after open")
    p.add_argument("op", choices=["attach", "detach", "ctl"])
    p.add_argument("device")
    p.add_argument("name")
    p.add_argument("cmd", type=int, nargs="?", default=0)
    a = p.parse_args()

    fd = os.open(a.device, os.O_RDONLY)
    if a.uid is not None:
        os.setgroups([])
        os.setgid(a.uid)
        os.setuid(a.uid)
    name = a.name.encode().ljust(32, b"\0")[:32]
    if a.op == "attach":
        req, buf = BLKFILTER_ATTACH, bytearray(struct.pack("=32sQI4x", name, 0, 0))
    elif a.op == "detach":
        req, buf = BLKFILTER_DETACH, bytearray(struct.pack("=32s", name))
    else:
        req, buf = BLKFILTER_CTL, bytearray(struct.pack("=32sIIQ", name, a.cmd, 0, 0))
    try:
        fcntl.ioctl(fd, req, buf)
        print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])

main()
