#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Stamp a block device (or file) sector by sector, overwrite it at random
and verify it, so that a misplaced, stale or garbled sector in a snapshot
image or its original is found and described.

Every 512-byte sector holds a 32-byte header (magic, its own sector number,
a sequence number, a seed) and 480 bytes derived from (seed, seq).

  stamp.py fill DEV [--seed F]
      every sector: (own address, seq 0, seed F)
  stamp.py overwrite DEV --seed S [--threads T] [--count N] [--max-len B]
      N random writes (offsets and lengths in sectors, up to B bytes) from
      T threads with O_DIRECT; write i (from 0) has seq i+1 and seed S and is
      issued by thread i % T, in order
  stamp.py restore DEV --seed S [plan options] [--fill-seed F]
      stamp seq 0 with seed F again wherever that plan wrote
  stamp.py verify DEV --seq Q [--seed F]
      every sector exactly (own address, seq Q, seed F)
  stamp.py verify DEV --any
      every sector valid and at its own address, any seq and seed
  stamp.py verify DEV --plan S [plan options] [--fill-seed F]
      after "overwrite --seed S": every sector holds the last write of one
      of the threads that wrote it, or (seq 0, seed F) where none did

Plan options (--threads, --count, --max-len) must match the overwrite.
Exit status: 0 good, 1 bad data (the first bad sectors are described),
2 usage or I/O error.
"""
import argparse
import errno
import hashlib
import mmap
import os
import random
import struct
import sys
import threading

SECTOR = 512
MAGIC = b"BSNSTAMP"
HEADER = struct.Struct("<8sQQQ")  # magic, sector, seq, seed
CHUNK = 1 << 20                   # I/O size for fill, restore and verify
REPORT = 5                        # bad sectors described in detail

_payloads = {}


def payload(seed, seq):
    """The 480 bytes after the header of a sector stamped (seed, seq)."""
    key = (seed, seq)
    p = _payloads.get(key)
    if p is None:
        p = hashlib.shake_256(b"blksnap-stamp:%d:%d" % (seed, seq)).digest(SECTOR - HEADER.size)
        _payloads[key] = p
    return p


def stamps(first, count, seq, seed):
    """Sectors first..first+count-1 stamped (own address, seq, seed)."""
    tail = struct.pack("<QQ", seq, seed) + payload(seed, seq)
    pack = struct.Struct("<Q").pack
    return b"".join([MAGIC + pack(s) + tail for s in range(first, first + count)])


class Device:
    """A device or file opened for direct I/O with an aligned buffer."""

    def __init__(self, path, write, direct=True):
        flags = os.O_RDWR if write else os.O_RDONLY
        self.direct = direct
        if direct:
            try:
                self.fd = os.open(path, flags | os.O_DIRECT)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                print(f"{path}: no O_DIRECT, using buffered I/O", file=sys.stderr)
                self.direct = False
        if not self.direct:
            self.fd = os.open(path, flags)
        self.path = path
        size = os.lseek(self.fd, 0, os.SEEK_END)
        if size % SECTOR:
            raise SystemExit(f"{path}: size {size} is not a multiple of {SECTOR}")
        self.sectors = size // SECTOR

    def buffer(self, size):
        return mmap.mmap(-1, size)  # page aligned, as O_DIRECT wants

    def write(self, buf, data, sector):
        n = len(data)
        buf[:n] = data
        done = 0
        view = memoryview(buf)
        while done < n:
            w = os.pwrite(self.fd, view[done:n], sector * SECTOR + done)
            if w <= 0:
                raise OSError(errno.EIO, f"short write at sector {sector}")
            done += w
        view.release()

    def read(self, buf, sector, count):
        n = count * SECTOR
        view = memoryview(buf)
        done = 0
        while done < n:
            r = os.preadv(self.fd, [view[done:n]], sector * SECTOR + done)
            if r <= 0:
                view.release()
                raise OSError(errno.EIO, f"short read at sector {sector + done // SECTOR}")
            done += r
        data = bytes(view[:n])
        view.release()
        return data

    def sync(self):
        os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


def plan(seed, count, threads, sectors, max_len):
    """The writes of "overwrite --seed": (seq, first sector, count, thread)."""
    rng = random.Random(seed)
    max_sect = max(1, min(max_len // SECTOR, sectors))
    writes = []
    for i in range(count):
        n = rng.randint(1, max_sect)
        if rng.random() < 0.5 and sectors >= 8:
            # 4 KiB aligned, like most file system I/O
            n = min(max(8, n // 8 * 8), sectors // 8 * 8)
            first = rng.randrange(0, (sectors - n) // 8 + 1) * 8
        else:
            first = rng.randrange(0, sectors - n + 1)
        writes.append((i + 1, first, n, i % threads))
    return writes


def merged(writes):
    """The union of the written ranges, as sorted (first, count)."""
    out = []
    for _, first, n, _ in sorted(writes, key=lambda w: w[1]):
        if out and first <= out[-1][0] + out[-1][1]:
            a, c = out[-1]
            out[-1] = (a, max(c, first + n - a))
        else:
            out.append((first, n))
    return out


def cmd_fill(a):
    dev = Device(a.device, True, not a.buffered)
    buf = dev.buffer(CHUNK)
    per = CHUNK // SECTOR
    for s in range(0, dev.sectors, per):
        n = min(per, dev.sectors - s)
        dev.write(buf, stamps(s, n, a.seq, a.seed), s)
    dev.sync()
    print(f"{a.device}: stamped {dev.sectors} sectors with seq {a.seq}, seed {a.seed}")
    return 0


def cmd_overwrite(a):
    dev = Device(a.device, True, not a.buffered)
    writes = plan(a.seed, a.count, a.threads, dev.sectors, a.max_len)
    errors = []

    def worker(t):
        mine = [w for w in writes if w[3] == t]
        if not mine:
            return
        buf = dev.buffer(max(n for _, _, n, _ in mine) * SECTOR)
        try:
            for seq, first, n, _ in mine:
                dev.write(buf, stamps(first, n, seq, a.seed), first)
        except OSError as e:
            errors.append(f"thread {t}: {e}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(n for _, _, n, _ in writes) * SECTOR
    print(f"{a.device}: {len(writes)} writes of {total // 1024} KiB from "
          f"{a.threads} threads, seed {a.seed}")
    for e in errors:
        print("  write failed: " + e)
    return 2 if errors else 0


def cmd_restore(a):
    dev = Device(a.device, True, not a.buffered)
    writes = plan(a.seed, a.count, a.threads, dev.sectors, a.max_len)
    buf = dev.buffer(CHUNK)
    per = CHUNK // SECTOR
    total = 0
    for first, n in merged(writes):
        for s in range(first, first + n, per):
            c = min(per, first + n - s)
            dev.write(buf, stamps(s, c, 0, a.fill_seed), s)
            total += c
    dev.sync()
    print(f"{a.device}: restored {total} sectors to seq 0, seed {a.fill_seed}")
    return 0


def describe(data, sector):
    """What a sector holds, in words."""
    if data == bytes(SECTOR):
        return "zeros"
    magic, addr, seq, seed = HEADER.unpack_from(data)
    if magic != MAGIC:
        return f"no stamp (starts {data[:16].hex()})"
    what = f"sector {addr} seq {seq} seed {seed}"
    if addr != sector:
        what += f" (misplaced by {addr - sector:+d})"
    if data[HEADER.size:] != payload(seed, seq):
        what += ", garbled pattern"
    return what


class Checker:
    def __init__(self, path):
        self.path = path
        self.bad = 0

    def report(self, sector, data, expected):
        self.bad += 1
        if self.bad <= REPORT:
            print(f"{self.path}: bad sector {sector} (byte {sector * SECTOR}): "
                  f"found {describe(data, sector)}; expected {expected}")

    def finish(self, what):
        if self.bad:
            if self.bad > REPORT:
                print(f"{self.path}: ... {self.bad - REPORT} more bad sectors")
            print(f"{self.path}: FAILED: {self.bad} bad sectors ({what})")
            return 1
        print(f"{self.path}: ok ({what})")
        return 0


def valid(data, sector):
    """A well-formed stamp at its own address: (seq, seed), or None."""
    magic, addr, seq, seed = HEADER.unpack_from(data)
    if magic != MAGIC or addr != sector or data[HEADER.size:] != payload(seed, seq):
        return None
    return seq, seed


def segments(writes, sectors, seed, fill_seed, threads):
    """Split the device where any planned write starts or ends. In each
    piece every sector was written by the same writes, so it may hold the
    last of them of each thread: [(start, end, [(seq, seed)...])], one
    candidate where the content is certain."""
    points = sorted({0, sectors} | {f for _, f, _, _ in writes} |
                    {f + n for _, f, n, _ in writes})
    out = []
    for start, end in zip(points, points[1:]):
        last = {}
        for seq, first, n, t in writes:
            if first <= start < first + n:
                last[t] = max(last.get(t, 0), seq)
        cands = sorted((s, seed) for s in last.values()) or [(0, fill_seed)]
        out.append((start, end, cands))
    return out


def cmd_verify(a):
    dev = Device(a.device, False, not a.buffered)
    buf = dev.buffer(CHUNK)
    per = CHUNK // SECTOR
    chk = Checker(a.device)
    if a.plan is not None:
        writes = plan(a.plan, a.count, a.threads, dev.sectors, a.max_len)
        segs = segments(writes, dev.sectors, a.plan, a.fill_seed, a.threads)
        what = f"after overwrite seed {a.plan}, fill seed {a.fill_seed}"
    elif a.any:
        segs = [(0, dev.sectors, None)]
        what = "every sector valid at its own address"
    else:
        segs = [(0, dev.sectors, [(a.seq, a.seed)])]
        what = f"every sector seq {a.seq} seed {a.seed}"
    k = 0
    for s in range(0, dev.sectors, per):
        n = min(per, dev.sectors - s)
        data = dev.read(buf, s, n)
        while segs[k][1] <= s:
            k += 1
        j = k
        while j < len(segs) and segs[j][0] < s + n:
            lo, hi = max(segs[j][0], s), min(segs[j][1], s + n)
            cands = segs[j][2]
            part = data[(lo - s) * SECTOR:(hi - s) * SECTOR]
            j += 1
            if cands is not None and len(cands) == 1:
                if part == stamps(lo, hi - lo, *cands[0]):
                    continue
            # Sector by sector: any valid stamp, or one of the candidates.
            for sec in range(lo, hi):
                d = part[(sec - lo) * SECTOR:(sec - lo + 1) * SECTOR]
                got = valid(d, sec)
                if got is None:
                    chk.report(sec, d, "a valid stamp of this sector" if cands is None
                               else " or ".join(f"seq {q} seed {e}" for q, e in cands))
                elif cands is not None and got not in cands:
                    chk.report(sec, d, " or ".join(f"seq {q} seed {e}" for q, e in cands))
    return chk.finish(what)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument("op", choices=["fill", "overwrite", "restore", "verify"])
    p.add_argument("device")
    p.add_argument("--seed", type=int, default=0,
                   help="fill/verify: stamp seed; overwrite/restore: plan seed")
    p.add_argument("--seq", type=int, default=0, help="fill/verify: sequence number")
    p.add_argument("--fill-seed", type=int, default=0, help="restore, verify --plan")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--max-len", type=int, default=1 << 20, help="bytes")
    p.add_argument("--any", action="store_true", help="verify: any valid stamps")
    p.add_argument("--plan", type=int, help="verify: against this overwrite seed")
    p.add_argument("--buffered", action="store_true", help="no O_DIRECT")
    a = p.parse_args()
    if a.threads < 1 or a.count < 0 or a.max_len < SECTOR:
        p.error("bad --threads, --count or --max-len")
    try:
        return {"fill": cmd_fill, "overwrite": cmd_overwrite,
                "restore": cmd_restore, "verify": cmd_verify}[a.op](a)
    except OSError as e:
        print(f"{a.device}: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
