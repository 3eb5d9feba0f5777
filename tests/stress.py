#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Concurrency stress of snapshots and change tracking: writers of every kind
run on two devices the whole time, readers read the images whenever there
are images, and a loop takes, verifies and destroys a snapshot of both
devices. Whatever the timing, each cycle checks that

  - every sector of each image holds what the device held at one instant
    of the take: the last write to it that ended before the take started,
    or one that had started before the take ended (a write in flight may
    land on either side); a second full read at the end of the cycle finds
    the same, and so does every concurrent read;
  - every sector whose image content differs from the previous cycle's is
    marked in the CBT table of this take with a number above the previous
    take's, and so is every block written between the two takes.

usage: stress.py --blksnap CLI --storage DIR [--storage-device DEV]
                 --fill-seed F --seed S --rounds N DEV DEV
With --storage-device, even cycles keep the difference storage on that
block device (where image reads of stored chunks go straight to it), odd
ones in a file in DIR.
Both devices are stamped with `stamp.py fill --seed F`, have the blksnap
filter attached and are in no snapshot. Each writer owns a slice of a
device: O_DIRECT random, O_DIRECT sequential, buffered random (each write
fsynced) and discards (zeros). Writes are stamped (stamp.py's format) with
a sequence number of their own. Exit status 0 if every check held.
"""
import argparse
import errno
import fcntl
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stamp import HEADER, MAGIC, SECTOR, Device, describe, payload, stamps  # noqa: E402

BLKDISCARD = 0x1277
FILL = 0        # the value of a sector as stamped by the fill
ZEROS = -1      # the value of a discarded sector
KINDS = ("direct-random", "direct-sequential", "buffered", "discard")
MAX_WRITE = 256 << 10


class Failed(Exception):
    pass


class Disk:
    """A device, its writers' history per sector, and its image."""

    def __init__(self, path):
        self.path = path
        st = os.stat(path)
        self.image = f"/dev/blksnap-{os.major(st.st_rdev)}-{os.minor(st.st_rdev)}"
        dev = Device(path, write=False)
        self.sectors = dev.sectors
        dev.close()
        # Per sector, the writes to it in order: [value, start, end]; end
        # is None while in flight. One writer owns each sector.
        self.history = [[] for _ in range(self.sectors)]
        self.lock = threading.Lock()
        # Writes that ended, for the CBT check: (first, count, start, end).
        self.done = []

    def begin(self, first, count, value):
        entry = [value, time.monotonic(), None]
        with self.lock:
            for s in range(first, first + count):
                self.history[s].append(entry)
        return entry

    def end(self, entry, first, count):
        entry[2] = time.monotonic()
        with self.lock:
            self.done.append((first, count, entry[1], entry[2]))

    def prune(self):
        """Forget what no take from now on can see: all but the last write
        that ended, per sector."""
        with self.lock:
            for s, h in enumerate(self.history):
                last = max((i for i, e in enumerate(h) if e[2] is not None), default=0)
                if last:
                    self.history[s] = h[last:]

    def candidates(self, sector, take):
        """The values sector may hold in the image of a take (start, end)."""
        start, end = take
        base, later = FILL, []
        for value, s, e in list(self.history[sector]):
            if e is not None and e < start:
                base, later = value, []
            elif s < end:
                later.append(value)
        return [base] + later


def value_of(data, sector, seed, fill_seed):
    """What one sector read from an image holds: FILL, ZEROS, a write's
    sequence number, or None for anything else."""
    if data == bytes(SECTOR):
        return ZEROS
    magic, addr, seq, s = HEADER.unpack_from(data)
    if magic != MAGIC or addr != sector or data[HEADER.size:] != payload(s, seq):
        return None
    if seq == 0 and s == fill_seed:
        return FILL
    if s == seed and seq > 0:
        return seq
    return None


class Stress:
    def __init__(self, a):
        self.a = a
        self.disks = [Disk(p) for p in a.devices]
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.stop = threading.Event()
        self.take = None        # (start, end) while the images exist
        self.take_lock = threading.Condition()
        self.readers_busy = 0
        self.errors = []
        self.counts = {k: 0 for k in KINDS + ("image reads",)}

    def next_seq(self):
        with self.seq_lock:
            self.seq += 1
            return self.seq

    def error(self, text):
        self.errors.append(text)
        print("FAIL: " + text, flush=True)
        self.stop.set()

    # --- writers -----------------------------------------------------------

    def writer(self, disk, kind, first, last, rng):
        direct = kind != "buffered"
        dev = Device(disk.path, write=True, direct=direct)
        buf = dev.buffer(MAX_WRITE)
        cursor = first
        try:
            while not self.stop.is_set():
                if kind == "direct-sequential":
                    count = rng.choice((16, 128, 512))
                    if cursor + count > last:
                        cursor = first
                    start = cursor
                    cursor += count
                elif kind == "discard":
                    count = rng.randrange(8, MAX_WRITE // SECTOR + 1, 8)
                    start = rng.randrange(first, last - count + 1, 8)
                else:
                    count = rng.randint(1, MAX_WRITE // SECTOR)
                    start = rng.randint(first, last - count)
                if kind == "discard":
                    entry = disk.begin(start, count, ZEROS)
                    fcntl.ioctl(dev.fd, BLKDISCARD, (start * SECTOR).to_bytes(8, "little") +
                                (count * SECTOR).to_bytes(8, "little"))
                else:
                    seq = self.next_seq()
                    entry = disk.begin(start, count, seq)
                    dev.write(buf, stamps(start, count, seq, self.a.seed), start)
                    if not direct:
                        dev.sync()
                disk.end(entry, start, count)
                self.counts[kind] += 1
                time.sleep(rng.random() * 0.01)
        except OSError as e:
            self.error(f"{kind} writer on {disk.path}: {e}")
        finally:
            dev.close()

    # --- image checks ------------------------------------------------------

    def check_image_data(self, disk, take, first, data, what):
        """Each sector read from the image must be a candidate; returns the
        values found."""
        values = []
        for i in range(len(data) // SECTOR):
            s = first + i
            v = value_of(data[i * SECTOR:(i + 1) * SECTOR], s, self.a.seed, self.a.fill_seed)
            cands = disk.candidates(s, take)
            if v is None or v not in cands:
                raise Failed(f"{what}: {disk.image} sector {s} holds "
                             f"{describe(data[i * SECTOR:(i + 1) * SECTOR], s)}; "
                             f"the device held one of {cands} (0 fill, -1 zeros) at the take")
            values.append(v)
        return values

    def read_image(self, disk, take, what):
        dev = Device(disk.image, write=False)
        step = 2048
        buf = dev.buffer(step * SECTOR)
        values = []
        try:
            for first in range(0, disk.sectors, step):
                count = min(step, disk.sectors - first)
                values += self.check_image_data(disk, take, first, dev.read(buf, first, count), what)
        finally:
            dev.close()
        return values

    def reader(self, n, rng):
        while not self.stop.is_set():
            with self.take_lock:
                while self.take is None and not self.stop.is_set():
                    self.take_lock.wait(0.1)
                if self.stop.is_set():
                    return
                take = self.take
                self.readers_busy += 1
            try:
                disk = rng.choice(self.disks)
                count = rng.randint(1, 2048)
                first = rng.randint(0, disk.sectors - count)
                dev = Device(disk.image, write=False)
                try:
                    data = dev.read(dev.buffer(count * SECTOR), first, count)
                finally:
                    dev.close()
                self.check_image_data(disk, take, first, data, f"reader {n}")
                self.counts["image reads"] += 1
            except (Failed, OSError) as e:
                self.error(str(e))
            finally:
                with self.take_lock:
                    self.readers_busy -= 1
                    self.take_lock.notify_all()

    # --- snapshot cycle ----------------------------------------------------

    def cli(self, *args):
        r = subprocess.run([self.a.blksnap, *args], capture_output=True, text=True)
        if r.returncode:
            raise Failed(f"blksnap {' '.join(args)}: {r.stdout.strip()} {r.stderr.strip()}")
        return r.stdout

    def cbt(self, disk):
        info = json.loads(self.cli("cbtinfo", "--json", "-d", disk.path))
        path = os.path.join(self.a.storage, "cbt")
        self.cli("readcbtmap", "-d", disk.path, "-f", path)
        with open(path, "rb") as f:
            table = f.read()
        os.unlink(path)
        return info, table

    def check_cbt(self, disk, cycle, prev, values, info, table, window):
        prev_values, prev_info = prev
        if info["generation_id"] != prev_info["generation_id"]:
            print(f"cycle {cycle}: {disk.path}: new CBT generation, no incremental check")
            return
        old = prev_info["changes_number"]
        per_block = info["block_size"] // SECTOR
        for s, (v, p) in enumerate(zip(values, prev_values)):
            if v != p and table[s // per_block] <= old:
                raise Failed(f"cycle {cycle}: {disk.path} sector {s} changed between the images "
                             f"({p} -> {v}) but block {s // per_block} is marked "
                             f"{table[s // per_block]}, not above {old}")
        start, end = window
        with disk.lock:
            done = [d for d in disk.done if d[2] > start and d[3] < end]
            disk.done = [d for d in disk.done if d[3] >= end]
        for first, count, _, _ in done:
            for b in range(first // per_block, (first + count - 1) // per_block + 1):
                if table[b] <= old:
                    raise Failed(f"cycle {cycle}: {disk.path}: a write of sectors {first}+{count} "
                                 f"between the takes is not marked: block {b} is {table[b]}, "
                                 f"not above {old}")

    def cycle(self, n, prev, last_take_end):
        for d in self.disks:
            d.prune()
        on_device = self.a.storage_device is not None and n % 2 == 0
        storage = self.a.storage_device if on_device else os.path.join(self.a.storage, f"diff{n}")
        if not on_device:
            open(storage, "w").close()
        args = ["snapshot_create", "-f", storage, "-l", "1G"]
        for d in self.disks:
            args += ["-d", d.path]
        out = self.cli(*args)
        sid = re.search(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}", out)
        if not sid:
            raise Failed(f"snapshot_create printed no id: {out!r}")
        sid = sid.group(0)
        try:
            start = time.monotonic()
            self.cli("snapshot_take", "-i", sid)
            take = (start, time.monotonic())
            for d in self.disks:
                for _ in range(50):
                    if os.path.exists(d.image):
                        break
                    time.sleep(0.1)
            with self.take_lock:
                self.take = take
                self.take_lock.notify_all()
            values = [self.read_image(d, take, f"cycle {n}") for d in self.disks]
            cbts = [self.cbt(d) for d in self.disks]
            if prev is not None:
                for d, pv, v, (info, table) in zip(self.disks, prev, values, cbts):
                    self.check_cbt(d, n, pv, v, info, table, (last_take_end, take[0]))
            time.sleep(self.a.hold)
            again = [self.read_image(d, take, f"cycle {n}, second read") for d in self.disks]
            for d, v, w in zip(self.disks, values, again):
                if v != w:
                    s = next(i for i, (x, y) in enumerate(zip(v, w)) if x != y)
                    raise Failed(f"cycle {n}: {d.image} changed after the take: sector {s} "
                                 f"{v[s]} then {w[s]}")
            errors = [int(self.info_error(d)) for d in self.disks]
            if any(errors):
                raise Failed(f"cycle {n}: the snapshot reports errors {errors}")
        finally:
            with self.take_lock:
                self.take = None
                while self.readers_busy:
                    self.take_lock.wait()
            self.cli("snapshot_destroy", "-i", sid)
            if not on_device:
                os.unlink(storage)
        return [(v, info) for v, (info, _) in zip(values, cbts)], take[1]

    def info_error(self, disk):
        return self.cli("snapshot_info", "-d", disk.path, "--field", "error_code").strip()

    def run(self):
        threads = []
        for di, disk in enumerate(self.disks):
            slice_len = disk.sectors // len(KINDS)
            for ki, kind in enumerate(KINDS):
                rng = random.Random(self.a.seed * 100 + di * 10 + ki)
                first = ki * slice_len
                threads.append(threading.Thread(
                    target=self.writer, args=(disk, kind, first, first + slice_len, rng)))
        for r in range(2):
            threads.append(threading.Thread(
                target=self.reader, args=(r, random.Random(self.a.seed * 100 + 50 + r))))
        for t in threads:
            t.start()
        prev, last_end = None, time.monotonic()
        try:
            for n in range(1, self.a.rounds + 1):
                if self.stop.is_set():
                    break
                prev, last_end = self.cycle(n, prev, last_end)
                print(f"cycle {n} of {self.a.rounds}: images and CBT as they must be; "
                      f"{', '.join(f'{k} {c}' for k, c in self.counts.items())}", flush=True)
        except Failed as e:
            self.error(str(e))
        finally:
            self.stop.set()
            with self.take_lock:
                self.take_lock.notify_all()
            for t in threads:
                t.join()
        return 1 if self.errors else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blksnap", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--storage-device")
    p.add_argument("--fill-seed", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--hold", type=float, default=1.0,
                   help="seconds the images stay between their two full reads")
    p.add_argument("devices", nargs=2)
    a = p.parse_args()
    try:
        return Stress(a).run()
    except OSError as e:
        print(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
