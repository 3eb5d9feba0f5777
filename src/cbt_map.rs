// SPDX-License-Identifier: GPL-2.0
//! The change block tracking map of one device: a byte per tracking block in
//! two tables (writes mark the write table; user space reads the read table,
//! which a snapshot take makes a copy of), and the generation they belong to.
#![forbid(unsafe_code)]

use kernel::prelude::*;

use crate::kapi::random;
use crate::math::cbt::{CbtGeometry, CbtLimits, CbtNumbers, SECTOR_SHIFT};

/// What CBTINFO reports.
pub(crate) struct CbtInfo {
    pub(crate) capacity: u64,
    pub(crate) block_size: u32,
    pub(crate) block_count: u32,
    pub(crate) generation: [u8; 16],
    pub(crate) changes_number: u8,
}

/// The tables of one device; callers serialise access.
pub(crate) struct CbtMap {
    capacity: u64,
    geometry: CbtGeometry,
    numbers: CbtNumbers,
    generation: [u8; 16],
    write: KVVec<u8>,
    read: KVVec<u8>,
}

impl CbtMap {
    /// Empty tables for a device of `capacity` sectors, in a new generation.
    pub(crate) fn new(capacity: u64, limits: &CbtLimits) -> Result<Self> {
        let geometry = CbtGeometry::new(capacity, limits);
        // block_count is a u32 in the interface.
        let count = u32::try_from(geometry.block_count).map_err(|_| EFBIG)?;
        let count = usize::try_from(count).map_err(|_| EFBIG)?;
        let mut generation = [0u8; 16];
        random::fill(&mut generation);
        Ok(Self {
            capacity,
            geometry,
            numbers: CbtNumbers::new(),
            generation,
            write: KVVec::from_elem(0, count, GFP_KERNEL)?,
            read: KVVec::from_elem(0, count, GFP_KERNEL)?,
        })
    }

    /// Record that sectors `[sector, sector + count)` changed.
    pub(crate) fn mark(&mut self, sector: u64, count: u64) {
        let blocks = self.geometry.blocks(sector, count);
        self.write[blocks].fill(self.numbers.active());
    }

    /// Record a change that user space reports: it shows in the read table
    /// as part of the latest snapshot, and in the write table for the next.
    pub(crate) fn mark_dirty(&mut self, sector: u64, count: u64) {
        let blocks = self.geometry.blocks(sector, count);
        self.write[blocks.clone()].fill(self.numbers.active());
        self.read[blocks].fill(self.numbers.previous());
    }

    /// Device capacity in sectors the tables cover.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// A snapshot is taken: the read table becomes what the write table
    /// holds, and writes are marked with the next number. After 254
    /// snapshots both tables start over in a new generation.
    pub(crate) fn switch(&mut self) {
        if self.numbers.switch(&mut self.write, &mut self.read, false) {
            random::fill(&mut self.generation);
        }
    }

    pub(crate) fn info(&self) -> CbtInfo {
        CbtInfo {
            capacity: self.capacity << SECTOR_SHIFT,
            block_size: self.geometry.block_size(),
            // Checked in `new`.
            block_count: self.write.len() as u32,
            generation: self.generation,
            changes_number: self.numbers.previous(),
        }
    }

    /// The read table.
    pub(crate) fn read_table(&self) -> &[u8] {
        &self.read
    }
}
