#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Seeded fuzzer of blksnap's ioctls.

Random sequences of every control ioctl and every BLKFILTER ioctl and
command, with valid, boundary and garbage arguments (lengths 0, 1, short,
huge; offsets at and past the ends; null, unmapped, read-only, kernel and
non-canonical pointers; live, destroyed and random snapshot ids; devices in
another snapshot or none), interleaved with image opens and reads and with
loop devices created and removed, from several threads at once.

Each thread draws from its own random.Random(seed, thread): a seed replays
every thread's choices (their interleaving is the scheduler's). A call must
return, with success or an errno: a hang is caught by the caller's timeout,
an oops by the kernel log check. The coverage figure is the number of
distinct outcomes, (request, argument class, result) triples; --outcomes
FILE accumulates them over runs and says which seeds found new ones.

usage: fuzz.py --seed S --calls N --threads T --dir DIR DEVICE...
DIR takes storage files; the DEVICEs are free block devices.
"""
import argparse
import collections
import ctypes
import mmap
import os
import random
import struct
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from snapshot_ioctl import (  # noqa: E402
    BAD_PTR, BLKFILTER_CTL, IOCTL_COLLECT, IOCTL_CREATE, IOCTL_DESTROY, IOCTL_TAKE,
    IOCTL_VERSION, IOCTL_WAIT_EVENT, R, UNMAPPED, W, Buf, ioc, ioctl, libc)

BLKFILTER_ATTACH = ioc(R | W, 0x12, 142, 48)
BLKFILTER_DETACH = ioc(R | W, 0x12, 143, 32)
KERNEL_PTR = 0xffff888000001000
HUGE = 0xffffffff
MAX_SNAPSHOTS = 64

libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
# A page the kernel may read but not write: copy_to_user into it is EFAULT.
READ_ONLY = libc.mmap(None, 4096, 1, 0x22, -1, 0)  # PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS


class World:
    """What the threads share: devices, snapshot ids, storage paths."""

    def __init__(self, devices, directory):
        self.lock = threading.Lock()
        self.devices = list(devices)
        self.loops = []          # loop devices this run made: (device, file)
        self.live = []           # ids of snapshots that may exist
        self.dead = []           # ids of destroyed snapshots
        self.dir = directory
        self.files = 0
        self.control = os.open("/dev/blksnap-control", os.O_RDWR)

    def storage(self, rng):
        with self.lock:
            self.files += 1
            n = self.files
        kind = rng.choice(["file", "file", "dir", "missing", "device", "empty"])
        if kind == "file":
            # Named by process too: another fuzzer may share the directory.
            path = os.path.join(self.dir, f"s{os.getpid()}-{n}")
            open(path, "wb").close()
            return kind, path
        if kind == "dir":
            return kind, self.dir
        if kind == "missing":
            return kind, os.path.join(self.dir, "no", "such")
        if kind == "device":
            with self.lock:
                return kind, rng.choice(self.devices)
        return kind, ""

    def snapshot_id(self, rng):
        with self.lock:
            kinds = ["random"] + ["live"] * bool(self.live) * 4 + ["dead"] * bool(self.dead)
            kind = rng.choice(kinds)
            if kind == "live":
                return kind, rng.choice(self.live)
            if kind == "dead":
                return kind, rng.choice(self.dead)
        return kind, uuid.UUID(int=rng.getrandbits(128)).bytes


def pointer(rng, addr):
    """A pointer of a random class: `addr` (a buffer big enough for anything
    the kernel may write there), or a bad one."""
    kind = rng.choice(["buf"] * 6 + ["null", "unmapped", "read-only", "kernel", "non-canonical"])
    return kind, {"buf": addr, "null": 0, "unmapped": UNMAPPED, "read-only": READ_ONLY,
                  "kernel": KERNEL_PTR, "non-canonical": BAD_PTR}[kind]


def length(rng, exact):
    kind = rng.choice(["exact"] * 5 + ["zero", "one", "short", "long", "huge"])
    return kind, {"exact": exact, "zero": 0, "one": 1, "short": max(exact - 1, 0),
                  "long": exact + 64, "huge": HUGE}[kind]


class Fuzzer:
    def __init__(self, world, rng):
        self.w = world
        self.rng = rng
        self.outcomes = collections.Counter()

    def record(self, request, kind, result):
        self.outcomes[(request, kind, result)] += 1
        return result

    def device(self):
        with self.w.lock:
            return self.rng.choice(self.w.devices)

    def device_fd(self):
        dev = self.device()
        try:
            return dev, os.open(dev, os.O_RDONLY)
        except OSError:
            return dev, None

    # Control device.
    def version(self):
        buf = Buf(bytes(8))
        kind, ptr = pointer(self.rng, buf.addr)
        self.record("version", kind, ioctl(self.w.control, IOCTL_VERSION, ptr))

    def create(self):
        with self.w.lock:
            full = len(self.w.live) >= MAX_SNAPSHOTS
        if full:
            return self.destroy()
        kind, path = self.w.storage(self.rng)
        name = ctypes.create_string_buffer(path.encode())
        limit = self.rng.choice([0, 1, 2048, 1 << 17, 1 << 40, 2 ** 64 - 1])
        name_kind, name_ptr = pointer(self.rng, ctypes.addressof(name))
        arg = Buf(struct.pack("=QQ16s", limit, name_ptr, bytes(16)))
        arg_kind, arg_ptr = pointer(self.rng, arg.addr)
        r = ioctl(self.w.control, IOCTL_CREATE, arg_ptr)
        if r == "ok" and arg_kind == "buf":
            with self.w.lock:
                self.w.live.append(arg.raw[16:32])
        self.record("create", f"{kind}/{name_kind}/{arg_kind}/limit{min(limit, 1 << 41)}", r)

    def destroy(self):
        kind, sid = self.w.snapshot_id(self.rng)
        arg = Buf(sid)
        ptr_kind, ptr = pointer(self.rng, arg.addr)
        r = ioctl(self.w.control, IOCTL_DESTROY, ptr)
        if r == "ok":
            with self.w.lock:
                if sid in self.w.live:
                    self.w.live.remove(sid)
                self.w.dead.append(sid)
        self.record("destroy", f"{kind}/{ptr_kind}", r)

    def take(self):
        kind, sid = self.w.snapshot_id(self.rng)
        arg = Buf(sid)
        ptr_kind, ptr = pointer(self.rng, arg.addr)
        self.record("take", f"{kind}/{ptr_kind}", ioctl(self.w.control, IOCTL_TAKE, ptr))

    def collect(self):
        count = self.rng.choice([0, 1, 2, MAX_SNAPSHOTS, HUGE])
        ids = Buf(bytes(16 * MAX_SNAPSHOTS))
        ids_kind, ids_ptr = pointer(self.rng, ids.addr)
        if ids_kind == "buf":
            # Other processes create snapshots too: never let the kernel
            # write past the buffer.
            count = min(count, MAX_SNAPSHOTS)
        arg = Buf(struct.pack("=I4xQ", count, ids_ptr))
        arg_kind, arg_ptr = pointer(self.rng, arg.addr)
        r = ioctl(self.w.control, IOCTL_COLLECT, arg_ptr)
        self.record("collect", f"count{min(count, MAX_SNAPSHOTS + 1)}/{ids_kind}/{arg_kind}", r)

    def wait_event(self):
        kind, sid = self.w.snapshot_id(self.rng)
        arg = Buf(struct.pack("=16sII", sid, self.rng.choice([0, 1, 20]), 0).ljust(4096, b"\0"))
        ptr_kind, ptr = pointer(self.rng, arg.addr)
        self.record("wait_event", f"{kind}/{ptr_kind}", ioctl(self.w.control, IOCTL_WAIT_EVENT, ptr))

    def control_garbage(self):
        nr = self.rng.choice([6, 7, 63, 255])
        size = self.rng.choice([0, 8, 16, 4096])
        req = ioc(self.rng.choice([0, 1, 2, 3]), ord("V"), nr, size)
        buf = Buf(bytes(max(size, 8)))
        self.record("control_garbage", f"nr{nr}", ioctl(self.w.control, req, buf.addr))

    # Block device filter.
    def attach_detach(self):
        dev, fd = self.device_fd()
        if fd is None:
            return
        try:
            name = self.rng.choice([b"blksnap", b"blksnap", b"other", b"", b"x" * 32])
            if self.rng.random() < 0.5:
                opt = Buf(bytes(16))
                opt_kind, opt_ptr = pointer(self.rng, opt.addr)
                optlen = self.rng.choice([0, 16, HUGE])
                arg = Buf(struct.pack("=32sQI4x", name.ljust(32, b"\0")[:32], opt_ptr, optlen))
                r = ioctl(fd, BLKFILTER_ATTACH, arg.addr)
                self.record("attach", f"{name[:7]!r}/{opt_kind}/len{optlen}", r)
            else:
                arg = Buf(struct.pack("=32s", name.ljust(32, b"\0")[:32]))
                self.record("detach", f"{name[:7]!r}", ioctl(fd, BLKFILTER_DETACH, arg.addr))
        finally:
            os.close(fd)

    def ctl(self):
        dev, fd = self.device_fd()
        if fd is None:
            return
        try:
            cmd = self.rng.choice([0, 1, 2, 3, 4] * 3 + [5, 255, HUGE])
            kind, opt, size = self.command(cmd)
            len_kind, optlen = length(self.rng, size)
            ptr_kind, ptr = pointer(self.rng, opt.addr)
            name = b"blksnap" if self.rng.random() < 0.95 else b"other"
            arg = Buf(struct.pack("=32sIIQ", name.ljust(32, b"\0"), cmd, optlen, ptr))
            r = ioctl(fd, BLKFILTER_CTL, arg.addr)
            self.record(f"ctl{min(cmd, 6)}", f"{kind}/{len_kind}/{ptr_kind}/{name.decode()}", r)
        finally:
            os.close(fd)

    def command(self, cmd):
        """The option buffer of command `cmd`: (argument class, Buf, size)."""
        rng = self.rng
        if cmd == 0 or cmd == 4:
            return "out", Buf(bytes(64)), 40 if cmd == 0 else 36
        if cmd == 1:
            blocks = rng.choice([0, 1, 1024, 4096, 65536])
            offset = rng.choice([0, blocks - 1 if blocks else 0, blocks, blocks + 1, HUGE])
            count = rng.choice([0, 1, blocks, 4096, HUGE])
            table = Buf(bytes(4096))
            table_kind, table_ptr = pointer(rng, table.addr)
            if count > 4096 and table_kind == "buf":
                table_kind, table_ptr = "unmapped", UNMAPPED
            req = Buf(struct.pack("=IIQ", offset & HUGE, count & HUGE, table_ptr))
            req.keep = table
            return f"map/{table_kind}", req, 16
        if cmd == 2:
            n = rng.choice([0, 1, 4, HUGE])
            ranges = b"".join(struct.pack("=QQ", rng.choice([0, 8, 1 << 17, 1 << 40, 2 ** 64 - 8]),
                                          rng.choice([0, 1, 8, 1 << 20, 2 ** 64 - 1]))
                              for _ in range(4))
            buf = Buf(ranges)
            ranges_kind, ranges_ptr = pointer(rng, buf.addr)
            req = Buf(struct.pack("=I4xQ", n, ranges_ptr))
            req.keep = buf
            return f"dirty{min(n, 5)}/{ranges_kind}", req, 16
        if cmd == 3:
            kind, sid = self.w.snapshot_id(rng)
            return f"add/{kind}", Buf(sid), 16
        return "garbage", Buf(bytes(64)), rng.choice([0, 8, 64])

    # Images and devices.
    def image_read(self):
        dev = self.device()
        try:
            rdev = os.stat(dev).st_rdev
        except OSError:
            return
        path = f"/dev/blksnap-{os.major(rdev)}-{os.minor(rdev)}"
        flags = os.O_RDONLY | (os.O_DIRECT if self.rng.random() < 0.5 else 0)
        try:
            fd = os.open(path, flags)
        except OSError as e:
            self.record("image_open", "", os.strerror(e.errno))
            return
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            off = self.rng.randrange(0, max(size, 1)) & ~4095
            # Page-aligned, as O_DIRECT wants it.
            os.preadv(fd, [mmap.mmap(-1, 4096 * self.rng.choice([1, 16]))], off)
            self.record("image_read", "", "ok")
        except OSError as e:
            self.record("image_read", "", os.strerror(e.errno))
        finally:
            os.close(fd)

    def loop_churn(self):
        with self.w.lock:
            if self.w.loops and self.rng.random() < 0.5:
                dev, path = self.w.loops.pop(self.rng.randrange(len(self.w.loops)))
                self.w.devices.remove(dev)
            else:
                dev = None
        if dev:
            r = subprocess.run(["losetup", "-d", dev], capture_output=True)
            os.unlink(path)
            self.record("loop_remove", "", "ok" if r.returncode == 0 else "failed")
            return
        path = os.path.join(self.w.dir, f"loop{self.rng.getrandbits(32)}")
        with open(path, "wb") as f:
            f.truncate(16 << 20)
        r = subprocess.run(["losetup", "--show", "-f", path], capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(path)
            self.record("loop_add", "", "failed")
            return
        with self.w.lock:
            self.w.loops.append((r.stdout.strip(), path))
            self.w.devices.append(r.stdout.strip())
        self.record("loop_add", "", "ok")

    def step(self):
        op = self.rng.choices(
            [self.version, self.create, self.destroy, self.take, self.collect, self.wait_event,
             self.control_garbage, self.attach_detach, self.ctl, self.image_read, self.loop_churn],
            weights=[1, 6, 4, 4, 2, 2, 1, 8, 16, 3, 0.2])[0]
        op()


def cleanup(world):
    """Destroy every snapshot, detach the filter, remove the loop devices."""
    ids = Buf(bytes(16 * 1024))
    arg = Buf(struct.pack("=I4xQ", 1024, ids.addr))
    if ioctl(world.control, IOCTL_COLLECT, arg.addr) == "ok":
        count = struct.unpack_from("=I", arg.raw)[0]
        for i in range(count):
            ioctl(world.control, IOCTL_DESTROY, Buf(ids.raw[16 * i:16 * i + 16]).addr)
    for dev in world.devices:
        try:
            fd = os.open(dev, os.O_RDONLY)
        except OSError:
            continue
        ioctl(fd, BLKFILTER_DETACH, Buf(b"blksnap".ljust(32, b"\0")).addr)
        os.close(fd)
    for dev, path in world.loops:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
        os.unlink(path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--calls", type=int, default=10000)
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--dir", required=True)
    p.add_argument("--outcomes", help="file of the outcomes seen so far, updated")
    p.add_argument("devices", nargs="+")
    a = p.parse_args()
    world = World(a.devices, a.dir)
    fuzzers = [Fuzzer(world, random.Random(f"{a.seed}/{t}")) for t in range(a.threads)]
    per_thread = a.calls // a.threads
    crashes = []

    def run(fuzzer):
        try:
            for _ in range(per_thread):
                fuzzer.step()
        except Exception as e:  # a fuzzer bug, not a kernel answer: fail
            crashes.append(repr(e))
            raise

    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(f,)) for f in fuzzers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    cleanup(world)
    outcomes = collections.Counter()
    for f in fuzzers:
        outcomes.update(f.outcomes)
    calls = sum(outcomes.values())
    errors = {o for o in outcomes if o[2] != "ok"}
    print(f"seed {a.seed}: {calls} calls in {elapsed:.0f} s, {len(outcomes)} distinct outcomes "
          f"({len(errors)} of them errors)")
    by_request = collections.Counter()
    for (request, _, result), n in outcomes.items():
        by_request[(request, result)] += n
    for (request, result), n in sorted(by_request.items()):
        print(f"  {request:16} {result:10} {n}")
    if a.outcomes:
        seen = set()
        if os.path.exists(a.outcomes):
            with open(a.outcomes) as f:
                seen = {tuple(line.rstrip("\n").split("\t")) for line in f if line.strip()}
        new = {o for o in outcomes if o not in seen}
        print(f"seed {a.seed}: {len(new)} outcomes not seen before (of {len(seen | set(outcomes))})")
        with open(a.outcomes, "a") as f:
            for o in sorted(new):
                f.write("\t".join(o) + "\n")
    if crashes:
        print(f"seed {a.seed}: FAIL: a fuzzer thread raised {crashes}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
