#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A C program written for upstream blksnap, compiled against the patched
# kernel's installed headers and linux/blksnap.h with upstream's names only
# (tests/agent/upstream_agent.c, built by scripts/build.sh), runs every
# ioctl and gets upstream's results.
. tests/lib.sh
. tests/snap_lib.sh
load_module
snap_workdir w
snap_loop dev 32M
"$BLKSNAP_TOOLS/upstream-agent" "$dev" "$w" || fail "the upstream agent"
exit 0
