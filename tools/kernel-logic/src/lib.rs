// SPDX-License-Identifier: GPL-2.0
//! The module's pure logic (`src/math`), compiled for the host so that it is
//! unit-tested with `cargo test`. The files are the module's own.
#![no_std]

pub mod math;

#[cfg(test)]
mod cbt_tests;
#[cfg(test)]
mod chunk_index_tests;
#[cfg(test)]
mod chunk_tests;
#[cfg(test)]
mod read_plan_tests;
#[cfg(test)]
mod storage_tests;
