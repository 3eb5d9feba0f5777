#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run timed I/O in parallel lanes against stamped devices and check what
each read returned, to reproduce races whose windows a slow device (dm-delay)
or throttling has widened to hundreds of milliseconds.

  race.py [--fill-seed F] [--eio-ok] --lane STEPS [--lane STEPS ...]

Lanes start together, each in its own thread; a lane's steps run one after
the other, separated by ';'. Each step is "DELAY OP ARGS": sleep DELAY
seconds, then:

  write PATH SECTOR COUNT SEQ   O_DIRECT write of COUNT sectors stamped with
                                sequence SEQ (stamp.py's format)
  read PATH SECTOR COUNT [SEQ]  O_DIRECT read; it must return the stamps
                                (seq SEQ, default 0, seed F): with seq 0,
                                the fill of a device that `stamp.py fill
                                --seed F` stamped before the snapshot
  same TAG PATH SECTOR COUNT    O_DIRECT read; every read of one TAG must
                                return the same data
  sh COMMAND...                 run COMMAND with sh; it must succeed

A read that fails with EIO is a failure unless --eio-ok. Every step is logged
with its start and end time. Exit status: 0 if every check held, 1 if not,
2 on a usage error.
"""
import argparse
import errno
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stamp import SECTOR, Device, describe, stamps  # noqa: E402


class Run:
    def __init__(self, fill_seed, eio_ok):
        self.fill_seed = fill_seed
        self.eio_ok = eio_ok
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.failures = []
        self.tagged = {}

    def log(self, lane, text):
        with self.lock:
            print(f"[{time.monotonic() - self.t0:7.3f}] lane {lane}: {text}", flush=True)

    def fail(self, lane, text):
        self.log(lane, "FAIL: " + text)
        with self.lock:
            self.failures.append(text)

    def read(self, path, sector, count):
        dev = Device(path, write=False)
        try:
            return dev.read(dev.buffer(count * SECTOR), sector, count)
        finally:
            dev.close()

    def step(self, lane, op, args):
        if op == "write":
            path, sector, count, seq = args[0], int(args[1]), int(args[2]), int(args[3])
            dev = Device(path, write=True)
            try:
                dev.write(dev.buffer(count * SECTOR), stamps(sector, count, seq, self.fill_seed), sector)
            finally:
                dev.close()
        elif op in ("read", "same"):
            tag = args.pop(0) if op == "same" else None
            path, sector, count = args[0], int(args[1]), int(args[2])
            try:
                data = self.read(path, sector, count)
            except OSError as e:
                if e.errno == errno.EIO and self.eio_ok:
                    self.log(lane, f"read {path} at {sector}: EIO (allowed)")
                    return
                raise
            if op == "read":
                seq = int(args[3]) if len(args) > 3 else 0
                self.expect(lane, path, sector, data, stamps(sector, count, seq, self.fill_seed))
            else:
                with self.lock:
                    first = self.tagged.setdefault(tag, (sector, data))
                if first[0] != sector:
                    raise SystemExit(f"tag {tag}: reads of different sectors")
                self.expect(lane, path, sector, data, first[1])
        elif op == "sh":
            r = subprocess.run(" ".join(args), shell=True, capture_output=True, text=True)
            for line in (r.stdout + r.stderr).splitlines():
                self.log(lane, "  " + line)
            if r.returncode:
                raise OSError(errno.EINVAL, f"'{' '.join(args)}' exited with {r.returncode}")
        else:
            raise SystemExit(f"unknown step '{op}'")

    def expect(self, lane, path, sector, data, want):
        bad = [i for i in range(len(data) // SECTOR)
               if data[i * SECTOR:(i + 1) * SECTOR] != want[i * SECTOR:(i + 1) * SECTOR]]
        if not bad:
            self.log(lane, f"read {path} at {sector}: as expected")
            return
        first = bad[0]
        s = sector + first
        self.fail(lane, f"read {path} at {sector}: {len(bad)} sectors differ; sector {s} holds "
                  f"{describe(data[first * SECTOR:(first + 1) * SECTOR], s)}, expected "
                  f"{describe(want[first * SECTOR:(first + 1) * SECTOR], s)}")

    def lane(self, n, steps):
        for step in steps:
            words = step.split()
            if not words:
                continue
            delay, op, args = float(words[0]), words[1], words[2:]
            time.sleep(delay)
            self.log(n, f"{op} {' '.join(args)}")
            try:
                self.step(n, op, args)
            except OSError as e:
                self.fail(n, f"{op} {' '.join(args)}: {e}")
                return
            self.log(n, f"{op} done")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fill-seed", type=int, default=0)
    p.add_argument("--eio-ok", action="store_true")
    p.add_argument("--lane", action="append", required=True)
    a = p.parse_args()
    run = Run(a.fill_seed, a.eio_ok)
    threads = [threading.Thread(target=run.lane, args=(i, lane.split(";")))
               for i, lane in enumerate(a.lane)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if run.failures:
        print(f"FAILED: {len(run.failures)} checks")
        return 1
    print("all checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
