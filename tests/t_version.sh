# SPDX-License-Identifier: GPL-2.0
# IOCTL_BLKSNAP_VERSION answers 2.0.0.0, and modinfo shows it as upstream's
# MODULE_VERSION; an unknown control ioctl is ENOTTY.
. tests/lib.sh
m=$(modinfo -F version "$BLKSNAP_MODULE") || fail "modinfo"
echo "modinfo version: $m"
[ "$m" = 2.0.0.0 ] || fail "modinfo shows version '$m'"
load_module

v=$($BLKSNAP version) || fail "blksnap version"
echo "version: $v"
[ "$v" = 2.0.0.0 ] || fail "version is '$v'"
j=$($BLKSNAP version --json) || fail "blksnap version --json"
echo "json: $j"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert (d["major"],d["minor"],d["revision"],d["build"])==(2,0,0,0)' "$j" ||
	fail "bad JSON"
r=$(python3 -c '
import errno, fcntl
f = open("/dev/blksnap-control", "rb")
try:
    fcntl.ioctl(f, (2 << 30) | (8 << 16) | (ord("V") << 8) | 99, bytearray(8))
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])')
[ "$r" = ENOTTY ] || fail "unknown ioctl gave $r"
exit 0
