// SPDX-License-Identifier: GPL-2.0
//! Safe wrappers over the C interfaces that Linux 6.12 has no Rust
//! abstraction for. Every `unsafe` block of blksnap lives under here.

pub(crate) mod bdev;
pub(crate) mod bio;
pub(crate) mod bioset;
pub(crate) mod blkfilter;
pub(crate) mod buffer;
pub(crate) mod control;
pub(crate) mod disk;
pub(crate) mod errno;
pub(crate) mod file;
pub(crate) mod global;
pub(crate) mod inflight;
pub(crate) mod params;
pub(crate) mod random;
pub(crate) mod task;
pub(crate) mod uapi;
pub(crate) mod user;
pub(crate) mod workqueue;
