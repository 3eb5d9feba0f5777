// SPDX-License-Identifier: GPL-2.0
//! The module's `crate::math`, under the same path, from its own files.

#[path = "../../../../src/math/cbt.rs"]
pub mod cbt;
#[path = "../../../../src/math/chunk.rs"]
pub mod chunk;
#[path = "../../../../src/math/chunk_index.rs"]
pub mod chunk_index;
#[path = "../../../../src/math/read_plan.rs"]
pub mod read_plan;
#[path = "../../../../src/math/storage.rs"]
pub mod storage;
