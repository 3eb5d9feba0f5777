#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the Rust-enabled, blkfilter-patched kernel, once per (source version,
# patches, config fragments, toolchain). Usage: build-kernel.sh [fast|debug]
# Prints the build directory (usable as KDIR for the module) on stdout.
set -euo pipefail

. "$(dirname "$0")/env.sh"
flavour=${1:-fast}
# Rust and KASAN together need Clang (init/Kconfig: !KASAN || CC_IS_CLANG).
case $flavour in
fast) fragments=(fast.config) llvm= ;;
debug) fragments=(fast.config debug.config) llvm=1 ;;
*) echo "build-kernel: unknown flavour '$flavour'" >&2; exit 2 ;;
esac

ksrc_version=$(dpkg-query -W -f='${Version}' linux-source-6.12)
toolchain="$("$RUSTC" --version) $("$BINDGEN" --version) $(gcc --version | head -1) $(clang --version | head -1) LLVM=$llvm"
src_key=$( { echo "$ksrc_version"; cat "$TOP"/kernel/patches/*.patch; } |
	sha256sum | cut -c1-16)
build_key=$( { echo "$src_key $toolchain"; for f in "${fragments[@]}"; do
	cat "$TOP/kernel/configs/$f"; done; } | sha256sum | cut -c1-16)

# One patched source tree, one build tree per flavour. A changed key updates
# them in place, so make rebuilds only what the change touches.
src=$BLKSNAP_CACHE/kernel/src
build=$BLKSNAP_CACHE/kernel/build-$flavour

if [ "$(cat "$build/.blksnap-built" 2>/dev/null)" = "$build_key" ]; then
	echo "$build"
	exit 0
fi

patched_files() {
	sed -n 's|^+++ b/||p' "$@" 2>/dev/null | sort -u
}

if [ "$(cat "$src/.blksnap-src-key" 2>/dev/null)" != "$src_key" ]; then
	echo "build-kernel: patching the source tree" >&2
	next=$BLKSNAP_CACHE/kernel/src.next
	rm -rf "$next"
	mkdir -p "$BLKSNAP_CACHE/kernel"
	# Hard links are safe: git apply replaces files instead of writing
	# through them, so the pristine tree stays pristine.
	cp -al "$KSRC" "$next"
	for p in "$TOP"/kernel/patches/*.patch; do
		(cd "$next" && git apply "$p")
	done
	if [ -d "$src" ]; then
		# Replace only the files whose content changed, keeping the
		# others' timestamps.
		{ cat "$src/.blksnap-patched-files"; patched_files "$TOP"/kernel/patches/*.patch; } |
			sort -u | while read -r f; do
			if [ ! -e "$next/$f" ]; then
				rm -f "$src/$f"
			elif ! cmp -s "$next/$f" "$src/$f"; then
				mkdir -p "$(dirname "$src/$f")"
				rm -f "$src/$f"
				cp "$next/$f" "$src/$f"
			fi
		done
		rm -rf "$next"
	else
		mv "$next" "$src"
	fi
	patched_files "$TOP"/kernel/patches/*.patch >"$src/.blksnap-patched-files"
	echo "$src_key" >"$src/.blksnap-src-key"
fi

mkdir -p "$build"
rm -f "$build/.blksnap-built"
kmake=(make -C "$src" O="$build" RUSTC="$RUSTC" BINDGEN="$BINDGEN" LLVM="$llvm" -s)
echo "build-kernel: configuring $flavour kernel in $build" >&2
"${kmake[@]}" tinyconfig >&2
fragment_paths=("$src/kernel/configs/kvm_guest.config")
for f in "${fragments[@]}"; do fragment_paths+=("$TOP/kernel/configs/$f"); done
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" \
	"${fragment_paths[@]}" >/dev/null
"${kmake[@]}" olddefconfig >&2

# merge_config drops options whose dependencies are missing without failing.
for f in "${fragments[@]}"; do
	grep -E '^CONFIG_[A-Z0-9_]+=[ym]' "$TOP/kernel/configs/$f" | while read -r want; do
		grep -qx "$want" "$build/.config" ||
			{ echo "build-kernel: $want did not survive olddefconfig" >&2; exit 1; }
	done
done

echo "build-kernel: building (logs in $build/build.log)" >&2
# headers_install: the user-space headers of the patched kernel (in
# $build/usr/include), which C programs written for upstream compile against.
if ! "${kmake[@]}" -j"$(nproc)" bzImage modules headers_install >"$build/build.log" 2>&1; then
	tail -40 "$build/build.log" >&2
	exit 1
fi
echo "$build_key" >"$build/.blksnap-built"
echo "$build"
