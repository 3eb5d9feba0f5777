#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build everything: toolchain (setup.sh), kernel (cached), blksnap.ko and
# the user-space tools. Usage: build.sh [fast|debug]
# Prints the kernel build directory on stdout.
set -euo pipefail

. "$(dirname "$0")/env.sh"
flavour=${1:-fast}

bash "$TOP/scripts/setup.sh" >&2
kdir=$(bash "$TOP/scripts/build-kernel.sh" "$flavour")

# The module is built in a copy of the checkout per flavour: a module is tied
# to the kernel it was built against.
mod=$BLKSNAP_CACHE/module-$flavour
mkdir -p "$mod/src" "$mod/tools/uapi/src"
cp "$TOP"/Kbuild "$TOP"/Makefile "$mod/"
cp -r "$TOP"/src/. "$mod/src/"
cp "$TOP"/tools/uapi/src/abi.rs "$mod/tools/uapi/src/"
llvm=
[ "$flavour" = debug ] && llvm=1
make -s -C "$mod" KDIR="$kdir" RUSTC="$RUSTC" BINDGEN="$BINDGEN" LLVM="$llvm" >&2

cargo build -q --release --manifest-path "$TOP/tools/Cargo.toml" >&2
# A C program written for upstream, against the patched kernel's headers.
cc -Wall -Werror -I "$kdir/usr/include" -I "$TOP/uapi" \
	-o "$TOP/tools/target/release/upstream-agent" "$TOP/tests/agent/upstream_agent.c" >&2
echo "$kdir"
