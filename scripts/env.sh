# SPDX-License-Identifier: GPL-2.0
#
# Paths and tool versions shared by every script. Sourced, not run.

: "${BLKSNAP_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/blksnap-rs}"
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The machine's rustup rustc comes first on PATH but has no rust-src and
# cannot read metadata built by Debian's rustc-web: always use the latter.
RUSTC=/usr/bin/rustc
BINDGEN_VERSION=0.73.2
BINDGEN=$BLKSNAP_CACHE/bindgen/bin/bindgen

KSRC_TARBALL=/usr/src/linux-source-6.12.tar.xz
KSRC=$BLKSNAP_CACHE/src/linux-source-6.12

export BLKSNAP_CACHE TOP RUSTC BINDGEN KSRC
mkdir -p "$BLKSNAP_CACHE"
