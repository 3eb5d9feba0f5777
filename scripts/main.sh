#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The main job: build everything and show blksnap working in the VM.
set -euo pipefail

. "$(dirname "$0")/env.sh"
kdir=$(bash "$TOP/scripts/build.sh" fast)
out=$BLKSNAP_CACHE/demo
bash "$TOP/scripts/vm.sh" "$kdir" "$out" 1200 \
	"env BLKSNAP_MODULE=$BLKSNAP_CACHE/module-fast/blksnap.ko BLKSNAP_TOOLS=$TOP/tools/target/release bash scripts/demo-guest.sh"
cat "$out/output.log" 2>/dev/null
[ "$(cat "$out/status" 2>/dev/null)" = 0 ]
