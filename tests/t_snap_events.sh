#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Events as upstream reports them, read with raw WAIT_EVENT ioctls. A
# storage file at its limit raises no_space with the total size it asked to
# grow to (the limit, at the limit), then the overflow a corrupted event with
# the positive errno 28 (ENOSPC), SNAPSHOTINFO -28. A block device storage
# cannot grow: no no_space event, only the corrupted one. After destroy,
# WAIT_EVENT says ESRCH.
. tests/lib.sh
. tests/snap_lib.sh
step=8192
load_module diff_storage_minimum=$step
snap_workdir w
snap_loop dev 64M
snap_loop stdev 8M

# events ID DEV EXPECTED: the events of snapshot ID, in order, as
# "no_space SECTORS" and "corrupted MAJ:MIN ERRNO" lines, must be EXPECTED.
events() {
	python3 - "$@" <<'PY'
import struct, sys, uuid
sys.path.insert(0, "tests")
from snapshot_ioctl import Control, ioctl, Buf, IOCTL_WAIT_EVENT

sid, want = uuid.UUID(sys.argv[1]).bytes, sys.argv[3].split(";")
c = Control()
got, timeouts = [], 0
while timeouts < 5 and not any(e.startswith("corrupted") for e in got):
    arg = Buf(struct.pack("=16sII", sid, 2000, 0).ljust(4096, b"\0"))
    r = ioctl(c.fd, IOCTL_WAIT_EVENT, arg.addr)
    if r == "ENOENT":
        timeouts += 1
        continue
    if r != "ok":
        sys.exit(f"FAIL: wait_event: {r}")
    code, time_label = struct.unpack_from("=Iq", arg.raw, 20)
    if code == 0:
        mj, mn, err = struct.unpack_from("=IIi", arg.raw, 32)
        got.append(f"corrupted {mj}:{mn} {err}")
    elif code == 1:
        got.append(f"no_space {struct.unpack_from('=Q', arg.raw, 32)[0]}")
    else:
        got.append(f"code {code}")
print("events:", "; ".join(got))
if got != want:
    sys.exit(f"FAIL: expected {'; '.join(want)}")
PY
}

# overflow NAME STORAGE LIMIT EXPECTED
overflow() {
	local name=$1 storage=$2 limit=$3 want=$4 id
	step "$name: 32 MiB written through a storage of 8 MiB"
	snap_create id "$storage" "$limit" "$dev"
	snap_take "$id"
	dd if=/dev/urandom of="$dev" bs=1M count=32 oflag=direct status=none ||
		fail "$name: writes to the original failed"
	events "$id" "$dev" "$want" || fail "$name: events"
	[ "$(snap_info "$dev" error_code)" = -28 ] || fail "$name: SNAPSHOTINFO error_code is not -28"
	snap_destroy "$id"
	python3 - "$id" <<'PY' || fail "$name: WAIT_EVENT after destroy"
import sys, uuid
sys.path.insert(0, "tests")
from snapshot_ioctl import Control
r = Control().wait_event(uuid.UUID(sys.argv[1]).bytes, 10)[0]
print("wait_event after destroy:", r)
sys.exit(0 if r == "ESRCH" else 1)
PY
}

: >"$w/diff"
overflow "storage file" "$w/diff" 8M "no_space 16384;corrupted $(dev_id "$dev") 28"
overflow "storage device" "$stdev" 64M "corrupted $(dev_id "$dev") 28"
exit 0
