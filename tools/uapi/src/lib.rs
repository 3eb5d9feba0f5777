// SPDX-License-Identifier: GPL-2.0
//! The blksnap user-space ABI.
//!
//! The layouts live in `abi.rs`, which the kernel module includes as well, so
//! that both sides of every ioctl are defined once.
#![no_std]

mod abi;
pub use abi::*;
