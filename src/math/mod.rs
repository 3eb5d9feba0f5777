// SPDX-License-Identifier: GPL-2.0
//! Pure logic in plain `core` Rust, also compiled on the host by
//! `tools/kernel-logic` and unit-tested there (hence `pub` items).

#[allow(unreachable_pub)]
pub(crate) mod cbt;
#[allow(unreachable_pub)]
pub(crate) mod chunk;
#[allow(unreachable_pub)]
pub(crate) mod chunk_index;
#[allow(unreachable_pub)]
pub(crate) mod read_plan;
#[allow(unreachable_pub)]
pub(crate) mod storage;
