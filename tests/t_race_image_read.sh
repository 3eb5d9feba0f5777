#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# An image read sent straight to the original must not see a write that
# reaches the original while it is in flight: neither a second write to a
# chunk the first write had copied meanwhile, nor a write to a chunk an
# image write had preserved meanwhile. dm-delay holds the original's reads
# for 2 s, so that both writes land before the image read is served.
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
snap_loop_stamped loop 64M 11
# Reads of the first 16 MiB take 2 s; chunks are 256 KiB (512 sectors).
slow_dev dev "$loop" 16 2000
snap_create_file id "$w/diff" 256M "$dev"
snap_take "$id"
img=$(image_of "$dev")

step "chunk 4: write, image read on the original, second write while it is in flight"
# The first write waits for its chunk to be copied (2 s); the image read
# starts meanwhile and reads the original until 2.7 s; the second write
# comes once the chunk is copied, before that read is served.
race --fill-seed 11 \
	--lane "0 write $dev 2048 8 1" \
	--lane "0.7 read $img 2048 512" \
	--lane "2.4 write $dev 2064 8 2" ||
	fail "the image read returned data written after the take"

step "chunk 8: image write, image read on the original, write to the original"
# The image write copies chunk 8 (2 s) before it changes it; the write to
# the original comes once it has, before the image read is served.
race --fill-seed 11 \
	--lane "0 write $img 4096 8 3" \
	--lane "0.7 read $img 4160 448" \
	--lane "2.4 write $dev 4170 8 4" ||
	fail "the image read returned data written after the take"

[ "$(snap_info "$dev" error_code)" = 0 ] || fail "the snapshot reports an error"
step "the original holds every write, the image its own"
race --fill-seed 11 \
	--lane "0 read $dev 2048 8 1; 0 read $dev 2064 8 2; 0 read $dev 4170 8 4" \
	--lane "0 read $img 4096 8 3; 0 read $img 4104 504; 0 read $img 2048 2048" || fail "after the writes"
exit 0
