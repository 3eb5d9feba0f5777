#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Send malformed and out-of-order snapshot requests to /dev/blksnap-control
and, through BLKFILTER_CTL, to the blksnap filter, and check that each one
fails with an errno of the interface (and that the well-formed ones work).

usage: snapshot_ioctl.py --dir DIR --dev DEV --dev2 DEV2 --storage-bdev BDEV
                         --fs-dev FSDEV --fs-dir FSDIR
DIR takes storage files; DEV, DEV2, BDEV and FSDEV have the blksnap filter
attached and are in no snapshot; BDEV is free to be used as a difference
storage; FSDIR is a directory on the file system mounted from FSDEV.
Each check prints its result; the exit status is 1 if any failed.

The codes are upstream's (../shared/spec/uapi.md, "Return codes"): an
unknown snapshot id is ESRCH, or ENODEV for destroy; ENOENT is only the
timeout of wait_event. Where upstream leaves the errno open, a set is
accepted: an unreadable argument struct (EFAULT; upstream ENODATA).
"""
import argparse
import ctypes
import errno
import os
import struct
import sys
import threading
import time
import uuid

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int


def ioc(direction, kind, nr, size):
    return (direction << 30) | (size << 16) | (kind << 8) | nr


R, W = 2, 1
V = ord("V")
IOCTL_VERSION = ioc(R, V, 0, 8)
IOCTL_CREATE = ioc(R | W, V, 1, 32)
IOCTL_DESTROY = ioc(W, V, 2, 16)
IOCTL_TAKE = ioc(W, V, 3, 16)
IOCTL_COLLECT = ioc(R, V, 4, 16)
IOCTL_WAIT_EVENT = ioc(R, V, 5, 4096)
BLKFILTER_CTL = ioc(R | W, 0x12, 144, 48)
SNAPSHOTADD, SNAPSHOTINFO = 3, 4

BAD_PTR = 0xdead000000000000  # non-canonical: never a valid user address
UNMAPPED = 0x1000             # canonical, below mmap_min_addr

BAD_ARG = ("EFAULT", "ENODATA")
SECTORS_64M = (64 << 20) // 512

failures = 0


def ioctl(fd, request, addr):
    """Issue the ioctl with a raw address; "ok" or the errno name."""
    ctypes.set_errno(0)
    if libc.ioctl(fd, request, addr) < 0:
        e = ctypes.get_errno()
        return errno.errorcode.get(e, str(e))
    return "ok"


class Buf:
    """A C buffer holding data, with its address."""

    def __init__(self, data):
        self.c = ctypes.create_string_buffer(bytes(data), len(data))
        self.addr = ctypes.addressof(self.c)

    @property
    def raw(self):
        return self.c.raw


def check(what, got, *wants):
    global failures
    print(f"{what}: {got}")
    if got not in wants:
        print(f"  FAIL: expected {' or '.join(wants)}")
        failures += 1


def check_true(what, cond, detail=""):
    global failures
    print(f"{what}: {'ok' if cond else 'FAIL'} {detail}".rstrip())
    if not cond:
        failures += 1


def show(i):
    return str(uuid.UUID(bytes=i))


class Control:
    def __init__(self):
        self.fd = os.open("/dev/blksnap-control", os.O_RDWR)
        self.live = []

    def create(self, path, limit=SECTORS_64M, name_addr=None):
        name = ctypes.create_string_buffer(path.encode()) if path is not None else None
        if name_addr is None:
            name_addr = ctypes.addressof(name) if name is not None else 0
        arg = Buf(struct.pack("=QQ16s", limit, name_addr, bytes(16)))
        r = ioctl(self.fd, IOCTL_CREATE, arg.addr)
        sid = arg.raw[16:32] if r == "ok" else None
        if sid is not None:
            self.live.append(sid)
        return r, sid

    def destroy(self, sid):
        r = ioctl(self.fd, IOCTL_DESTROY, Buf(sid).addr)
        if r == "ok" and sid in self.live:
            self.live.remove(sid)
        return r

    def take(self, sid):
        return ioctl(self.fd, IOCTL_TAKE, Buf(sid).addr)

    def collect(self, count, ids_addr):
        arg = Buf(struct.pack("=I4xQ", count, ids_addr))
        r = ioctl(self.fd, IOCTL_COLLECT, arg.addr)
        return r, struct.unpack_from("=I", arg.raw)[0]

    def wait_event(self, sid, timeout_ms):
        arg = Buf(struct.pack("=16sII", sid, timeout_ms, 0).ljust(4096, b"\0"))
        r = ioctl(self.fd, IOCTL_WAIT_EVENT, arg.addr)
        code = struct.unpack_from("=I", arg.raw, 20)[0]
        return r, code

    def cleanup(self):
        for sid in list(self.live):
            r = self.destroy(sid)
            print(f"cleanup: destroy {show(sid)}: {r}")


class Filtered:
    """A block device with the blksnap filter, for BLKFILTER_CTL."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        rdev = os.stat(path).st_rdev
        self.image = f"blksnap-{os.major(rdev)}-{os.minor(rdev)}"

    def ctl(self, cmd, optlen, opt):
        arg = Buf(struct.pack("=32sIIQ", b"blksnap", cmd, optlen, opt))
        return ioctl(self.fd, BLKFILTER_CTL, arg.addr)

    def add(self, sid, optlen=16):
        req = Buf(sid)
        return self.ctl(SNAPSHOTADD, optlen, req.addr)

    def info(self, optlen=36):
        out = Buf(bytes(36))
        r = self.ctl(SNAPSHOTINFO, optlen, out.addr)
        code, image = struct.unpack("=i32s", out.raw)
        return r, code, image.split(b"\0")[0].decode(errors="replace")


def run(a, c):
    dev, dev2 = Filtered(a.dev), Filtered(a.dev2)
    storage_bdev, fs_dev = Filtered(a.storage_bdev), Filtered(a.fs_dev)
    n = [0]

    def storage(directory=a.dir):
        n[0] += 1
        path = os.path.join(directory, f"storage{n[0]}")
        open(path, "wb").close()
        return path

    print("== version")
    v = Buf(bytes(8))
    check("version", ioctl(c.fd, IOCTL_VERSION, v.addr), "ok")
    check("version is 2.0.0.0", str(struct.unpack("=4H", v.raw)), "(2, 0, 0, 0)")
    check("version bad pointer", ioctl(c.fd, IOCTL_VERSION, BAD_PTR), *BAD_ARG)
    check("unknown control ioctl nr", ioctl(c.fd, ioc(R, V, 200, 8), v.addr), "ENOTTY")
    check("unknown control ioctl type", ioctl(c.fd, ioc(R, ord("X"), 1, 8), v.addr), "ENOTTY")

    print("== create")
    check("create with a bad file name pointer",
          c.create(None, name_addr=BAD_PTR)[0], "EFAULT")
    check("create with an unmapped file name pointer",
          c.create(None, name_addr=UNMAPPED)[0], "EFAULT")
    check("create without a file name", c.create(None)[0], "EINVAL", "EFAULT")
    check("create on a path that does not exist",
          c.create(os.path.join(a.dir, "no-such-dir", "storage"))[0], "ENOENT")
    r, sid = c.create(storage(), limit=0)
    check("create with limit 0", r, "EINVAL")
    r, sid = c.create("/dev/null")
    check_true("create on a character device fails", r != "ok", r)
    check("create with a bad argument pointer", ioctl(c.fd, IOCTL_CREATE, BAD_PTR), *BAD_ARG)

    print("== unknown ids")
    unknown = uuid.uuid4().bytes
    check("destroy an unknown id", c.destroy(unknown), "ENODEV")
    check("take an unknown id", c.take(unknown), "ESRCH")
    check("wait_event on an unknown id", c.wait_event(unknown, 10)[0], "ESRCH")
    check("snapshotadd of an unknown id", dev2.add(unknown), "ESRCH")
    r, code, image = dev2.info()
    check("snapshotinfo of a device in no snapshot", r, "ok")
    check_true("  no error, no image", code == 0 and image == "", f"(error_code {code}, image '{image}')")
    check("destroy bad pointer", ioctl(c.fd, IOCTL_DESTROY, BAD_PTR), *BAD_ARG)
    check("take bad pointer", ioctl(c.fd, IOCTL_TAKE, BAD_PTR), *BAD_ARG)

    print("== snapshot 1: a storage file")
    r, s1 = c.create(storage())
    check("create", r, "ok")
    if s1 is None:
        return
    print(f"   id {show(s1)}")
    check_true("the id is not zero", s1 != bytes(16))
    t = time.monotonic()
    check("wait_event 10 ms with no event", c.wait_event(s1, 10)[0], "ENOENT")
    check_true("wait_event returns after its timeout", time.monotonic() - t < 5,
               f"({time.monotonic() - t:.2f} s)")
    check("wait_event bad pointer", ioctl(c.fd, IOCTL_WAIT_EVENT, BAD_PTR), *BAD_ARG)
    check("wait_event unmapped pointer", ioctl(c.fd, IOCTL_WAIT_EVENT, UNMAPPED), *BAD_ARG)
    check("snapshotadd short optlen", dev.add(s1, optlen=15), "EINVAL")
    check("snapshotadd bad pointer", dev.ctl(SNAPSHOTADD, 16, BAD_PTR), *BAD_ARG)
    check("snapshotadd", dev.add(s1), "ok")
    check("snapshotadd of the same device again", dev.add(s1), "EALREADY")
    r, code, image = dev.info()
    check("snapshotinfo before the take", r, "ok")
    check_true("  no error, no image before the take", code == 0 and image == "",
               f"(error_code {code}, image '{image}')")
    check("snapshotinfo short optlen", dev.info(optlen=35)[0], "EINVAL")
    check("snapshotinfo bad pointer", dev.ctl(SNAPSHOTINFO, 36, BAD_PTR), *BAD_ARG)

    print("== snapshot 2: a block device storage")
    r, s2 = c.create(a.storage_bdev)
    check("create on a block device", r, "ok")
    if s2 is not None:
        check("snapshotadd of a device in another snapshot", dev.add(s2), "EBUSY", "EALREADY")
        r = storage_bdev.add(s2)
        print(f"snapshotadd of the storage device: {r}")
        if r == "ok":
            check_true("  then the take fails", c.take(s2) != "ok")
        else:
            check("  refused", r, "EINVAL", "EPERM", "EBUSY")

    print("== snapshot 3: a storage file on a filtered device's file system")
    r, s3 = c.create(storage(a.fs_dir))
    check("create", r, "ok")
    if s3 is not None:
        r = fs_dev.add(s3)
        print(f"snapshotadd of the device holding the storage file: {r}")
        if r == "ok":
            check_true("  then the take fails", c.take(s3) != "ok")
        else:
            check("  refused", r, "EINVAL", "EPERM", "EBUSY")

    print("== an empty snapshot")
    r, s4 = c.create(storage())
    check("create", r, "ok")
    if s4 is not None:
        check("take of a snapshot without devices", c.take(s4), "ENODEV")
        check("destroy", c.destroy(s4), "ok")

    print("== take")
    check("take", c.take(s1), "ok")
    r, code, image = dev.info()
    check("snapshotinfo after the take", r, "ok")
    check_true("  no error, the image named", code == 0 and image in (dev.image, "/dev/" + dev.image),
               f"(error_code {code}, image '{image}', expected {dev.image})")
    check("take again", c.take(s1), "EALREADY")
    check("wait_event 10 ms on a taken snapshot", c.wait_event(s1, 10)[0], "ENOENT")

    print("== collect")
    while len(c.live) < 2:
        r, _ = c.create(storage())
        check("create another", r, "ok")
        if r != "ok":
            return
    live = list(c.live)
    for count in (0, 1, 1000):
        r, got = c.collect(count, 0)
        check(f"collect without a buffer, count {count}", r, "ok")
        check_true("  count is the number of snapshots", got == len(live), f"({got}, expected {len(live)})")
    ids = Buf(bytes(16 * len(live)))
    r, count = c.collect(1, ids.addr)
    check("collect count 1", r, "ENODATA")
    check_true("  count is the number needed", count == len(live), f"({count}, expected {len(live)})")
    r, count = c.collect(len(live), ids.addr)
    check("collect", r, "ok")
    got = [ids.raw[16 * i:16 * i + 16] for i in range(min(count, len(live)))]
    check_true("  returns every snapshot, in creation order", count == len(live) and got == live,
               f"({count}: {[show(i) for i in got]})")
    check("collect bad ids pointer", c.collect(len(live), BAD_PTR)[0], *BAD_ARG)
    check("collect unmapped ids pointer", c.collect(len(live), UNMAPPED)[0], *BAD_ARG)
    check("collect bad pointer", ioctl(c.fd, IOCTL_COLLECT, BAD_PTR), *BAD_ARG)

    print("== destroy")
    for sid in live:
        check(f"destroy {show(sid)}", c.destroy(sid), "ok")
    check("destroy again", c.destroy(s1), "ENODEV")
    r, count = c.collect(0, 0)
    check("collect after destroy", r, "ok")
    check_true("  none left", count == 0, f"({count})")
    r, code, image = dev.info()
    check("snapshotinfo after destroy", r, "ok")
    check_true("  no error, no image", code == 0 and image == "", f"(error_code {code}, image '{image}')")

    print("== destroy while a waiter waits")
    r, s5 = c.create(storage())
    check("create", r, "ok")
    if s5 is not None:
        check("snapshotadd", dev2.add(s5), "ok")
        check("take", c.take(s5), "ok")
        result = []
        waiter = threading.Thread(target=lambda: result.append(c.wait_event(s5, 3000)[0]))
        waiter.start()
        time.sleep(0.5)
        check("destroy", c.destroy(s5), "ok")
        waiter.join(15)
        check_true("the waiter returned", not waiter.is_alive(), f"({result})")


def main():
    p = argparse.ArgumentParser()
    for opt in ("--dir", "--dev", "--dev2", "--storage-bdev", "--fs-dev", "--fs-dir"):
        p.add_argument(opt, required=True)
    a = p.parse_args()
    c = Control()
    try:
        run(a, c)
    finally:
        c.cleanup()
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
