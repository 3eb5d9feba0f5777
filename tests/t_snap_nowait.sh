# SPDX-License-Identifier: GPL-2.0
# Non-blocking I/O under a snapshot: RWF_NOWAIT direct writes to the original
# and reads of the image may fail with EAGAIN where copy-on-write would
# block, but never hang, and data is right after a blocking retry; fio's
# io_uring (which retries EAGAIN itself) writes and verifies through COW.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 64M
fill_random "$dev" || fail "fill"
dd if="$dev" of="$w/before" bs=1M iflag=direct status=none || fail "copy"
cp "$w/before" "$w/want"
: >"$w/diff"
snap_create id "$w/diff" 128M "$dev"
snap_take "$id"
img=$(image_of "$dev")
ran=

step "RWF_NOWAIT writes to the first 32 MiB of the original, reads of the image"
timeout -k 5 120 python3 - "$dev" "$w/want" "$img" "$w/before" <<'EOF'
import errno, mmap, os, random, sys
dev, want, img, before = sys.argv[1:]
nowait_reads = True
rng = random.Random(1234)
fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
eagain = 0
with open(want, "r+b") as w:
    for i in range(96):
        length = rng.choice([4096, 65536, 256 << 10, 1 << 20]) - rng.choice([0, 0, 512 * 3])
        off = rng.randrange(0, ((32 << 20) - length) // 512) * 512
        data = rng.randbytes(length)
        buf[:length] = data
        view = memoryview(buf)[:length]
        try:
            n = os.pwritev(fd, [view], off, os.RWF_NOWAIT)
        except BlockingIOError:
            eagain += 1
            n = 0
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP:
                print(f"{dev}: no RWF_NOWAIT support")
                sys.exit(4)
            sys.exit(f"RWF_NOWAIT write: {e}")
        if n < length:
            if os.pwritev(fd, [view[n:]], off + n) != length - n:
                sys.exit(f"short write at {off}")
        view.release()
        w.seek(off)
        w.write(data)
print(f"96 writes, {eagain} refused with EAGAIN and retried")
ifd = os.open(img, os.O_RDONLY | os.O_DIRECT)
eagain = 0
with open(before, "rb") as b:
    for off in range(0, 64 << 20, 1 << 20):
        view = memoryview(buf)
        n = 0
        try:
            if nowait_reads:
                n = os.preadv(ifd, [view], off, os.RWF_NOWAIT)
        except BlockingIOError:
            eagain += 1
        except OSError as e:
            if e.errno != errno.EOPNOTSUPP:
                sys.exit(f"RWF_NOWAIT read: {e}")
            print(f"{img}: no RWF_NOWAIT support, blocking reads")
            nowait_reads = False
        if n < len(buf):
            n += os.preadv(ifd, [view[n:]], off + n)
        view.release()
        b.seek(off)
        if buf[:n] != b.read(1 << 20):
            sys.exit(f"image differs at {off}")
print(f"64 image reads, {eagain} refused with EAGAIN and retried")
EOF
rc=$?
case $rc in
0) ran=1 ;;
4) echo "RWF_NOWAIT writes: skipped" ;;
124 | 137) fail "RWF_NOWAIT I/O hung" ;;
*) fail "RWF_NOWAIT I/O failed" ;;
esac

step "fio io_uring through copy-on-write"
if ! fio --name=probe --filename="$w/probe" --size=1M --bs=4k --rw=write \
	--ioengine=io_uring --output="$w/probe.log" >/dev/null 2>&1; then
	cat "$w/probe.log" 2>/dev/null
	echo "no fio with a working io_uring engine: skipped"
else
	timeout -k 5 180 fio --name=cow --filename="$dev" --ioengine=io_uring --direct=1 \
		--rw=randwrite --bs=64k --offset=32M --size=16M --iodepth=16 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=1 \
		--output="$w/fio.log"
	rc=$?
	grep -E 'err=|IOPS|verify' "$w/fio.log"
	case $rc in
	0) ran=1 ;;
	124 | 137) fail "fio hung" ;;
	*) cat "$w/fio.log"; fail "fio failed" ;;
	esac
	# fio wrote 32..48 MiB: take that part of the device as the new truth.
	dd if="$dev" of="$w/want" bs=1M skip=32 seek=32 count=16 iflag=direct conv=notrunc status=none
fi
[ -n "$ran" ] || exit $KSFT_SKIP

[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot failed"
cmp <(dd if="$img" bs=1M iflag=direct status=none) "$w/before" ||
	fail "the image is not the content at the take"
cmp <(dd if="$dev" bs=1M iflag=direct status=none) "$w/want" ||
	fail "the original does not hold what was written"
snap_destroy "$id"
exit 0
