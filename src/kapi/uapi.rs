// SPDX-License-Identifier: GPL-2.0
//! The user-space ABI, shared with the tools (`tools/uapi/src/abi.rs`), made
//! copyable to and from user memory.

// The ABI is complete, the module uses part of it so far; the items are `pub`
// for the tools crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../tools/uapi/src/abi.rs"]
mod abi;
pub(crate) use abi::*;

use kernel::types::{AsBytes, FromBytes};

macro_rules! plain_data {
    ($($t:ty),*) => {$(
        // SAFETY: a `repr(C)` struct of integers and integer arrays whose
        // padding is explicit (size asserted in abi.rs): every bit pattern is
        // valid and no byte is uninitialised.
        unsafe impl FromBytes for $t {}
        // SAFETY: as above.
        unsafe impl AsBytes for $t {}
    )*};
}

plain_data!(
    BlksnapVersion,
    BlksnapCbtinfo,
    BlksnapCbtmap,
    BlksnapCbtdirty,
    BlksnapSectors,
    BlksnapUuid,
    BlksnapSnapshotadd,
    BlksnapSnapshotinfo,
    BlksnapSnapshotCreate,
    BlksnapSnapshotCollect,
    BlksnapEventCorrupted,
    BlksnapEventNoSpace
);
