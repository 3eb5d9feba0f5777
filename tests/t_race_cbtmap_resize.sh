#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# CBTMAP copies the table a page at a time; a take after the device shrank
# replaces the table with a smaller one meanwhile. The copy must fail
# cleanly (EAGAIN), not index past the new table. The user buffer is a
# shared mapping of a device whose reads dm-delay holds for 10 s, so that
# the first page fault of the copy leaves time for the resize and the take
# (a few seconds on a loaded machine).
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
truncate -s 1G "$w/disk" || fail "truncate"
dev=$(losetup --show -f "$w/disk") || fail "losetup"
on_exit losetup -d "$dev"
$BLKSNAP attach -d "$dev" || fail "attach"
on_exit $BLKSNAP detach -d "$dev"
blocks=$(cbt_field "$dev" block_count) || fail "cbtinfo"
[ "$blocks" -gt 8192 ] || fail "the table ($blocks blocks) is too small for the test"
snap_loop buf 1M
bufdev=bufslow$RANDOM
dm create "$bufdev" --table "0 2048 delay $buf 0 10000" && dm mknodes "$bufdev" || fail "dm-delay"
on_exit dm remove --retry "$bufdev"
cat >"$w/shrink.sh" <<EOS
set -e
truncate -s 512M $w/disk
losetup -c $dev
: >$w/diff
out=\$($BLKSNAP snapshot_create -f $w/diff -l 64M -d $dev)
id=\$(echo "\$out" | grep -oE '$SNAP_ID_RE' | head -n 1)
$BLKSNAP snapshot_take -i \$id
$BLKSNAP snapshot_destroy -i \$id
EOS

step "CBTMAP of $blocks blocks into a slow mapping; shrink to 512 MiB and take meanwhile"
python3 - "$dev" "/dev/mapper/$bufdev" "$blocks" "$w/shrink.sh" <<'PY' || fail "CBTMAP during a resize"
import ctypes, errno, fcntl, mmap, os, struct, subprocess, sys, threading, time
dev, bufdev, blocks, shrink = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
BLKFILTER_CTL = (3 << 30) | (48 << 16) | (0x12 << 8) | 144
CBTMAP = 1
bfd = os.open(bufdev, os.O_RDWR)
table = mmap.mmap(bfd, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
addr = ctypes.addressof(ctypes.c_char.from_buffer(table))
result = []
def cbtmap():
    req = ctypes.create_string_buffer(struct.pack("=IIQ", 0, blocks, addr), 16)
    arg = bytearray(struct.pack("=32sIIQ", b"blksnap", CBTMAP, 16, ctypes.addressof(req)))
    fd = os.open(dev, os.O_RDONLY)
    t0 = time.monotonic()
    try:
        fcntl.ioctl(fd, BLKFILTER_CTL, arg)
        result.append("ok")
    except OSError as e:
        result.append(errno.errorcode[e.errno])
    print(f"CBTMAP: {result[0]} after {time.monotonic() - t0:.1f} s")
t = threading.Thread(target=cbtmap)
t.start()
time.sleep(0.5)
subprocess.run(["bash", shrink], check=True)
print("resized and taken")
t.join()
sys.exit(0 if result == ["EAGAIN"] else 1)
PY
exit 0
