#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Fail each memory allocation of a blksnap request in turn.

For every request a caller makes (attach, create, add, take, the CBT and
snapshot queries, a write the filter holds for copy-on-write, an image read,
destroy, detach), the request is repeated with /proc/thread-self/fail-nth
set to 1, 2, 3, ...: the N-th allocation the calling thread makes (slab or
page, any of them, in the module or in the kernel below it) fails, until a
run completes without reaching the N-th. Each run must end with success or
a clean errno and leave a consistent state:

- a request that failed changed nothing: repeating it without a fault works;
- a write that succeeded is on the original, and the image still holds the
  content at the take unless the snapshot reports an error;
- an image read that succeeded returned the content at the take.

Allocations made by the module's workers (copying, storing) run in other
threads, which fail-nth does not reach.

usage: fault_alloc.py --dir DIR DEVICE
DIR takes storage files; DEVICE is a free block device of at least 64 MiB
whose content is random. Prints a line per request (fault points, results)
and exits 1 if any check failed.
"""
import argparse
import collections
import errno
import mmap
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_ioctl import (  # noqa: E402
    IOCTL_COLLECT, IOCTL_VERSION, R, W, Buf, Control, Filtered, ioc, ioctl)

BLKFILTER_ATTACH = ioc(R | W, 0x12, 142, 48)
BLKFILTER_DETACH = ioc(R | W, 0x12, 143, 32)
CBTINFO, CBTMAP, CBTDIRTY = 0, 1, 2
CHUNK = 256 << 10          # the default chunk size (chunk_minimum_shift 18)
IO = 64 << 10              # each write: part of one chunk
# What a failed allocation may come back as: ENOMEM from a request, EIO
# from a bio the block layer could not complete.
ALLOWED = ("ENOMEM",)
IO_ALLOWED = ("ENOMEM", "EIO")
MAX_POINTS = 3000          # a request making more allocations is a bug

failures = 0


def bad(what):
    global failures
    failures += 1
    print(f"  FAIL: {what}")


class FailNth:
    """/proc/thread-self/fail-nth of the calling thread."""

    def __init__(self):
        self.fd = os.open("/proc/thread-self/fail-nth", os.O_RDWR)

    def run(self, n, call):
        """call() with its n-th allocation failing; (result, whether the
        fault was injected, i.e. the call reached its n-th allocation)."""
        os.write(self.fd, b"%d" % n)
        try:
            result = call()
        finally:
            left = int(os.pread(self.fd, 32, 0).strip() or 0)
            os.write(self.fd, b"0")
        return result, left == 0


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def direct_read(path, offset, length):
    """O_DIRECT read into a page-aligned buffer."""
    buf = mmap.mmap(-1, length)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        n = os.preadv(fd, [buf], offset)
    finally:
        os.close(fd)
    return buf[:n]


class Device:
    """The device under test, its filter and its content at the take."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(os.path.realpath(path))
        self.size = self._size()
        rdev = os.stat(path).st_rdev
        self.image = f"/dev/blksnap-{os.major(rdev)}-{os.minor(rdev)}"
        self.base = None
        self.fd = os.open(path, os.O_RDONLY)
        self.attach_arg = Buf(b"blksnap".ljust(48, b"\0"))
        self.detach_arg = Buf(b"blksnap".ljust(32, b"\0"))
        self.write_fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
        self.write_buf = mmap.mmap(-1, IO)

    def _size(self):
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)

    def filter(self):
        with open(f"/sys/class/block/{self.name}/filter") as f:
            return f.read().strip()

    # Only the request itself runs with a fault: files and buffers are
    # ready before.
    def attach(self):
        return ioctl(self.fd, BLKFILTER_ATTACH, self.attach_arg.addr)

    def detach(self):
        return ioctl(self.fd, BLKFILTER_DETACH, self.detach_arg.addr)

    def remember(self, length=None):
        """The device's content now (its first length bytes): what an image
        taken now must hold."""
        self.base = direct_read(self.path, 0, length or self.size)


def unfaulted(what, got):
    if got != "ok":
        bad(f"{what} without a fault: {got}")


def verbose(level):
    """How much the fault injection says in the kernel log."""
    for attr in ("failslab", "fail_page_alloc"):
        with open(f"/sys/kernel/debug/{attr}/verbose", "w") as f:
            f.write(str(level))


def sweep(inject, name, setup, call, verify, allowed=ALLOWED):
    """Run call() with its 1st, 2nd, ... allocation failing; setup() before
    and verify(state, result, injected) after each run."""
    results = collections.Counter()
    start = time.monotonic()
    for n in range(1, MAX_POINTS + 1):
        state = setup()
        result, injected = inject.run(n, lambda: call(state))
        results[result] += 1
        verify(state, result, injected)
        if not injected:
            if result != "ok":
                bad(f"{name} without a fault: {result}")
            summary = ", ".join(f"{r} {c}" for r, c in sorted(results.items()))
            print(f"{name}: {n - 1} allocations failed in turn ({summary}) "
                  f"in {time.monotonic() - start:.1f} s")
            return
        if result != "ok" and result not in allowed:
            bad(f"{name}, allocation {n} failed: {result}")
            # Again, with the failed allocation's stack in the kernel log.
            verbose(2)
            state = setup()
            again, _ = inject.run(n, lambda: call(state))
            verify(state, again, True)
            verbose(0)
            print(f"  again, with the stack of the failed allocation in the kernel log: {again}")
    bad(f"{name}: more than {MAX_POINTS} allocations")


class Session:
    def __init__(self, storage, dev):
        self.ctl = Control()
        self.storage = storage
        self.dev = dev
        self.filtered = None
        self.sid = None
        self.next_chunk = 0

    # A snapshot of the device, in the wanted state, made without faults.
    def snapshot(self, take):
        r, sid = self.ctl.create(self.storage)
        unfaulted("create", r)
        unfaulted("add", self.filtered.add(sid))
        if take:
            unfaulted("take", self.ctl.take(sid))
            self.dev.remember()
        self.sid = sid
        self.next_chunk = 0
        return sid

    def destroy(self):
        if self.sid is not None:
            unfaulted("destroy", self.ctl.destroy(self.sid))
            self.sid = None

    def error_code(self):
        r, code, _ = self.filtered.info()
        unfaulted("snapshotinfo", r)
        return code

    def image_exact(self, what, offset, length):
        data = direct_read(self.dev.image, offset, length)
        if data != self.dev.base[offset:offset + length]:
            bad(f"{what}: the image at {offset} is not the content at the take")

    # attach and detach
    def attach(self, inject):
        def verify(_, r, injected):
            attached = self.dev.filter() == "blksnap"
            if attached != (r == "ok"):
                bad(f"attach returned {r} and the filter is '{self.dev.filter()}'")
            if attached:
                unfaulted("detach", self.dev.detach())
        sweep(inject, "attach", lambda: None, lambda _: self.dev.attach(), verify)

    def detach(self, inject):
        def setup():
            unfaulted("attach", self.dev.attach())

        def verify(_, r, injected):
            attached = self.dev.filter() == "blksnap"
            if attached == (r == "ok"):
                bad(f"detach returned {r} and the filter is '{self.dev.filter()}'")
            if attached:
                unfaulted("detach", self.dev.detach())
        sweep(inject, "detach", setup, lambda _: self.dev.detach(), verify)

    # snapshot requests
    def create(self, inject):
        created = []

        def call(_):
            r, sid = self.ctl.create(self.storage)
            created.append(sid)
            return r

        def verify(_, r, injected):
            sid = created.pop()
            n = collect_count(self.ctl)
            if (r == "ok") != (n == 1):
                bad(f"create returned {r} and {n} snapshots exist")
            if sid is not None:
                unfaulted("destroy", self.ctl.destroy(sid))
        sweep(inject, "create", lambda: None, call, verify)

    def add(self, inject):
        def setup():
            r, sid = self.ctl.create(self.storage)
            unfaulted("create", r)
            return sid

        def verify(sid, r, injected):
            if r != "ok":
                unfaulted("add again after a failed add", self.filtered.add(sid))
            unfaulted("take after add", self.ctl.take(sid))
            if not os.path.exists(self.dev.image):
                bad("no image after the take")
            unfaulted("destroy", self.ctl.destroy(sid))
        sweep(inject, "add", setup, lambda sid: self.filtered.add(sid), verify)

    def take(self, inject):
        def setup():
            self.snapshot(take=False)
            return self.sid

        def verify(sid, r, injected):
            if r != "ok":
                if os.path.exists(self.dev.image):
                    bad(f"take failed ({r}) and the image exists")
                unfaulted("take again after a failed take", self.ctl.take(sid))
            self.dev.remember(CHUNK)
            # Copy-on-write works: a write, then the image still reads the
            # content at the take.
            self.write_chunk(0)
            self.image_exact("take", 0, CHUNK)
            if self.error_code() != 0:
                bad("the snapshot broke after the take")
            self.destroy()
        # add_disk() ignores a failed allocation of the image disk's name,
        # and device_add() then fails with EINVAL.
        sweep(inject, "take", setup, lambda sid: self.ctl.take(sid), verify, ALLOWED + ("EINVAL",))

    def write_chunk(self, chunk):
        """A write without a fault."""
        self.dev.write_buf[:] = os.urandom(IO)
        if os.pwritev(self.dev.write_fd, [self.dev.write_buf], chunk * CHUNK) != IO:
            bad("short write")

    def write(self, inject):
        """A write to a chunk not copied yet: the filter holds it for
        copy-on-write."""
        chunks = self.dev.size // CHUNK

        def setup():
            if self.sid is None or self.next_chunk == chunks:
                self.destroy()
                self.snapshot(take=True)
            chunk = self.next_chunk
            self.next_chunk += 1
            self.dev.write_buf[:] = os.urandom(IO)
            return chunk

        def call(chunk):
            try:
                n = os.pwritev(self.dev.write_fd, [self.dev.write_buf], chunk * CHUNK)
            except OSError as e:
                return errname(e)
            return "ok" if n == IO else f"short write {n}"

        def verify(chunk, r, injected):
            offset = chunk * CHUNK
            if r == "ok" and direct_read(self.dev.path, offset, IO) != self.dev.write_buf[:]:
                bad(f"a write at {offset} that succeeded is not on the original")
            if self.error_code() == 0:
                self.image_exact("write", offset, CHUNK)
            else:
                print(f"  the snapshot broke at allocation failure (result {r})")
                self.destroy()
        sweep(inject, "copy-on-write write", setup, call, verify, IO_ALLOWED)
        self.destroy()

    def image_read(self, inject):
        """Image reads over a chunk copied and one not copied."""
        length = 2 * CHUNK
        buf = mmap.mmap(-1, length)

        def setup():
            if self.sid is None:
                self.snapshot(take=True)
                self.write_chunk(0)
            return os.open(self.dev.image, os.O_RDONLY | os.O_DIRECT)

        def call(fd):
            try:
                n = os.preadv(fd, [buf], 0)
            except OSError as e:
                return errname(e)
            return "ok" if n == length and buf[:] == self.dev.base[:length] else "wrong data"

        def verify(fd, r, injected):
            os.close(fd)
            if r == "wrong data":
                bad("an image read succeeded with data that is not the content at the take")
            if self.error_code() != 0:
                print(f"  the snapshot broke at an image read (result {r})")
                self.destroy()
        sweep(inject, "image read", setup, call, verify, IO_ALLOWED)
        self.destroy()

    def queries(self, inject):
        """CBT and snapshot queries: each fails cleanly or works."""
        info = Buf(bytes(40))

        def cbtinfo(_):
            return self.filtered.ctl(CBTINFO, 40, info.addr)
        sweep(inject, "cbtinfo", lambda: None, cbtinfo, lambda *a: None)
        unfaulted("cbtinfo", cbtinfo(None))
        blocks = struct.unpack_from("=I", info.raw, 12)[0]
        table = Buf(bytes(blocks))
        req = Buf(struct.pack("=IIQ", 0, blocks, table.addr))
        sweep(inject, "cbtmap", lambda: None,
              lambda _: self.filtered.ctl(CBTMAP, 16, req.addr), lambda *a: None)
        ranges = Buf(struct.pack("=QQ", 0, 8))
        dirty = Buf(struct.pack("=IIQ", 1, 0, ranges.addr))
        sweep(inject, "cbtdirty", lambda: None,
              lambda _: self.filtered.ctl(CBTDIRTY, 16, dirty.addr), lambda *a: None)
        self.snapshot(take=True)
        sweep(inject, "snapshotinfo", lambda: None, lambda _: self.filtered.info()[0],
              lambda *a: None)
        ids = Buf(bytes(16 * 4))
        collect = Buf(struct.pack("=I4xQ", 4, ids.addr))
        sweep(inject, "collect", lambda: None,
              lambda _: ioctl(self.ctl.fd, IOCTL_COLLECT, collect.addr), lambda *a: None)
        version = Buf(bytes(8))
        sweep(inject, "version", lambda: None,
              lambda _: ioctl(self.ctl.fd, IOCTL_VERSION, version.addr), lambda *a: None)

        def destroy_verify(sid, r, injected):
            if r != "ok":
                unfaulted("destroy again after a failed destroy", self.ctl.destroy(sid))
            if os.path.exists(self.dev.image):
                bad("the image is still there after destroy")
            self.sid = None

        def destroy_setup():
            if self.sid is None:
                self.snapshot(take=True)
                self.write_chunk(0)
            return self.sid
        sweep(inject, "destroy", destroy_setup, lambda sid: self.ctl.destroy(sid),
              destroy_verify)


def collect_count(ctl):
    buf = Buf(bytes(16))
    r = ioctl(ctl.fd, IOCTL_COLLECT, buf.addr)
    if r != "ok":
        bad(f"collect: {r}")
    return struct.unpack_from("=I", buf.raw)[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("device")
    a = p.parse_args()
    dev = Device(a.device)
    storage = os.path.join(a.dir, "storage")
    open(storage, "w").close()
    inject = FailNth()
    s = Session(storage, dev)
    s.attach(inject)
    s.detach(inject)
    s.create(inject)
    unfaulted("attach", dev.attach())
    s.filtered = Filtered(dev.path)
    s.add(inject)
    s.take(inject)
    s.write(inject)
    s.image_read(inject)
    s.queries(inject)
    s.destroy()
    if collect_count(s.ctl) != 0:
        bad("snapshots left")
    unfaulted("detach", dev.detach())
    print(f"{failures} checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
