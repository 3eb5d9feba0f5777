#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Send malformed CBTINFO / CBTMAP / CBTDIRTY commands to the blksnap filter
on DEVICE and check that each fails with the expected errno (and that the
well-formed ones still work). usage: cbt_bad_input.py DEVICE BLOCK_COUNT"""
import ctypes
import errno
import fcntl
import os
import struct
import sys

BLKFILTER_CTL = (3 << 30) | (48 << 16) | (0x12 << 8) | 144
CBTINFO, CBTMAP, CBTDIRTY = 0, 1, 2
BAD_PTR = 0xdead000000000000  # non-canonical: never a valid user address
UNMAPPED = 0x1000             # canonical, below mmap_min_addr

dev, block_count = sys.argv[1], int(sys.argv[2])
fd = os.open(dev, os.O_RDONLY)
failures = 0

def ctl(cmd, optlen, opt):
    arg = bytearray(struct.pack("=32sIIQ", b"blksnap", cmd, optlen, opt))
    try:
        fcntl.ioctl(fd, BLKFILTER_CTL, arg)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

def expect(what, want, got):
    global failures
    print(f"{what}: {got}")
    if got != want:
        print(f"  FAIL: expected {want}")
        failures += 1

def buf(data):
    b = ctypes.create_string_buffer(data, len(data))
    return b, ctypes.addressof(b)

# CBTINFO
info, info_ptr = buf(bytes(40))
expect("cbtinfo", "ok", ctl(CBTINFO, 40, info_ptr))
capacity = struct.unpack_from("=Q", info.raw)[0]
expect("cbtinfo optlen 39", "EINVAL", ctl(CBTINFO, 39, info_ptr))
expect("cbtinfo optlen 0", "EINVAL", ctl(CBTINFO, 0, info_ptr))
expect("cbtinfo bad pointer", "EFAULT", ctl(CBTINFO, 40, BAD_PTR))
expect("cbtinfo unmapped pointer", "EFAULT", ctl(CBTINFO, 40, UNMAPPED))

# CBTMAP
table, table_ptr = buf(bytes(block_count))
def cbtmap(offset, length, buffer, optlen=16):
    req, req_ptr = buf(struct.pack("=IIQ", offset, length, buffer))
    return ctl(CBTMAP, optlen, req_ptr)
expect("cbtmap whole", "ok", cbtmap(0, block_count, table_ptr))
expect("cbtmap tail", "ok", cbtmap(block_count - 1, 1, table_ptr))
expect("cbtmap nothing at the end", "ok", cbtmap(block_count, 0, table_ptr))
# Upstream's codes: a read reaching past the table is ENODATA.
expect("cbtmap length past the end", "ENODATA", cbtmap(block_count - 1, 2, table_ptr))
expect("cbtmap offset past the end", "ENODATA", cbtmap(block_count + 1, 1, table_ptr))
expect("cbtmap offset+length overflows", "ENODATA", cbtmap(0xffffffff, 0xffffffff, table_ptr))
expect("cbtmap short optlen", "EINVAL", cbtmap(0, block_count, table_ptr, optlen=15))
expect("cbtmap bad buffer", "EFAULT", cbtmap(0, block_count, BAD_PTR))
expect("cbtmap unmapped buffer", "EFAULT", cbtmap(0, block_count, UNMAPPED))
expect("cbtmap bad request pointer", "EFAULT", ctl(CBTMAP, 16, BAD_PTR))

# CBTDIRTY
sectors = capacity // 512
ranges, ranges_ptr = buf(struct.pack("=QQQQ", 0, 8, sectors - 8, 8))
def cbtdirty(count, ptr, optlen=16):
    req, req_ptr = buf(struct.pack("=IIQ", count, 0, ptr))
    return ctl(CBTDIRTY, optlen, req_ptr)
expect("cbtdirty", "ok", cbtdirty(2, ranges_ptr))
# Upstream's codes: a range past the device's end is EINVAL.
for offset, count in ((sectors - 8, 9), (sectors, 1), (2**63, 2**63), (1, 2**64 - 1)):
    past, past_ptr = buf(struct.pack("=QQ", offset, count))
    expect(f"cbtdirty {count} sectors at {offset}, past the end", "EINVAL", cbtdirty(1, past_ptr))
expect("cbtdirty none", "ok", cbtdirty(0, BAD_PTR))
expect("cbtdirty short optlen", "EINVAL", cbtdirty(1, ranges_ptr, optlen=8))
expect("cbtdirty bad ranges", "EFAULT", cbtdirty(1, BAD_PTR))
expect("cbtdirty count past the buffer", "EFAULT", cbtdirty(0xffffffff, UNMAPPED))
expect("cbtdirty bad request pointer", "EFAULT", ctl(CBTDIRTY, 16, BAD_PTR))

sys.exit(1 if failures else 0)
