// SPDX-License-Identifier: GPL-2.0
//! Pure logic in plain `core` Rust, also compiled on the host by
//! `tools/kernel-logic` and unit-tested there (hence `pub` items).

// TODO[TAKE]: CbtNumbers::switch() is called by snapshot take; drop
// dead_code once that lands.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod cbt;
