#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything the build and the VM tests need. Idempotent: each step
# checks first, so a second run on a ready machine takes a second or two.
set -euo pipefail

. "$(dirname "$0")/env.sh"

apt_packages=(
	linux-source-6.12 rustc-web rust-web-src
	libclang-dev clang llvm lld flex bison bc libelf-dev libssl-dev cpio kmod
	qemu-system-x86 fio xfsprogs e2fsprogs util-linux fdisk coreutils python3
	python3-matplotlib dmsetup gcc btrfs-progs rsync qemu-utils strace
)

# Sets `missing` to the packages of apt_packages not installed.
find_missing() {
	missing=()
	for p in "${apt_packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
}

# Twice: installing one package may remove another of the list (on a
# machine with a backported qemu-utils, Debian's qemu-system-x86 replaces
# it), which the second pass installs again in the version that fits.
find_missing
for pass in 1 2; do
	[ ${#missing[@]} -gt 0 ] || break
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	[ $pass = 2 ] || apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	find_missing
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: still not installed: ${missing[*]}" >&2
	exit 1
fi

# Debian's bindgen (0.60) is older than the 0.65 that Linux 6.12 requires.
if ! "$BINDGEN" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	echo "setup: installing bindgen-cli $BINDGEN_VERSION"
	cargo install --locked --root "$BLKSNAP_CACHE/bindgen" \
		bindgen-cli --version "$BINDGEN_VERSION"
fi

if [ ! -f "$KSRC/Makefile" ]; then
	echo "setup: unpacking $(basename "$KSRC_TARBALL")"
	rm -rf "$KSRC.tmp"
	mkdir -p "$KSRC.tmp"
	tar -xf "$KSRC_TARBALL" -C "$KSRC.tmp" --strip-components=1
	mv "$KSRC.tmp" "$KSRC"
fi
