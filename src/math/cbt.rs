// SPDX-License-Identifier: GPL-2.0
//! Change block tracking arithmetic: the table's geometry and which of its
//! blocks a range of sectors touches.
//!
//! Plain `core` Rust, compiled into the module and unit-tested on the host.

use core::ops::Range;

/// Bytes per sector, as a shift.
pub const SECTOR_SHIFT: u32 = 9;

/// The module parameters that bound the tracking block size.
#[derive(Clone, Copy, Debug)]
pub struct CbtLimits {
    /// Smallest block: 2^shift bytes.
    pub min_shift: u32,
    /// Largest block: 2^shift bytes.
    pub max_shift: u32,
    /// Blocks per device before the block grows.
    pub max_count: u64,
}

/// Size of one tracking block and number of blocks of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbtGeometry {
    /// The block is 2^block_shift bytes.
    pub block_shift: u32,
    /// Blocks covering the device (the last may be partial).
    pub block_count: u64,
}

/// Blocks of 2^shift bytes needed to cover `capacity` sectors.
fn count_by_shift(capacity: u64, shift: u32) -> u64 {
    let sectors_per_block_shift = shift - SECTOR_SHIFT;
    (capacity >> sectors_per_block_shift)
        + u64::from(capacity & ((1 << sectors_per_block_shift) - 1) != 0)
}

impl CbtGeometry {
    /// Smallest block size within `limits` for which the table has at most
    /// `limits.max_count` blocks; at the largest block size, whatever count
    /// that gives. Out-of-range parameters are clamped to what the interface
    /// can express (a block is at least a sector; `block_size` is a u32).
    pub fn new(capacity: u64, limits: &CbtLimits) -> Self {
        let max_shift = limits.max_shift.clamp(SECTOR_SHIFT, 31);
        let mut shift = limits.min_shift.clamp(SECTOR_SHIFT, max_shift);
        let mut count = count_by_shift(capacity, shift);
        while count > limits.max_count && shift < max_shift {
            shift += 1;
            count = count_by_shift(capacity, shift);
        }
        Self {
            block_shift: shift,
            block_count: count,
        }
    }

    /// Bytes per block.
    pub fn block_size(&self) -> u32 {
        1 << self.block_shift
    }

    /// Indexes of the blocks that sectors `[sector, sector + count)` touch,
    /// clipped to the table. Empty for an empty range or one past the end.
    pub fn blocks(&self, sector: u64, count: u64) -> Range<usize> {
        let shift = self.block_shift - SECTOR_SHIFT;
        if count == 0 {
            return 0..0;
        }
        let first = sector >> shift;
        let last = sector.saturating_add(count - 1) >> shift;
        let end = last.saturating_add(1).min(self.block_count);
        let first = first.min(end);
        // The table is in memory, so its length fits in usize.
        first as usize..end as usize
    }
}

/// Snapshot numbers of a device's change tracking: writes mark their blocks
/// in the write table with `active`; a snapshot take copies the write table
/// to the read table, which user space reads with `previous` as the
/// "changes number".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbtNumbers {
    active: u8,
    previous: u8,
}

impl Default for CbtNumbers {
    fn default() -> Self {
        Self::new()
    }
}

impl CbtNumbers {
    /// A new generation: no snapshot yet, writes are marked 1.
    pub const fn new() -> Self {
        Self {
            active: 1,
            previous: 0,
        }
    }

    /// The number writes are marked with now.
    pub fn active(&self) -> u8 {
        self.active
    }

    /// The number of the latest snapshot in this generation (0: none).
    pub fn previous(&self) -> u8 {
        self.previous
    }

    /// Switch the tables at a snapshot take. Marks must stay above the
    /// snapshot's number, so a generation holds at most 254 snapshots: the
    /// take after those, or one with `must_reset` (resize, internal error),
    /// clears both tables and returns true; the caller then makes a new
    /// generation id. Otherwise the read table becomes a copy of the write
    /// table.
    pub fn switch(&mut self, write: &mut [u8], read: &mut [u8], must_reset: bool) -> bool {
        if must_reset || self.active == u8::MAX {
            write.fill(0);
            read.fill(0);
            *self = Self::new();
            true
        } else {
            read.copy_from_slice(write);
            self.previous = self.active;
            self.active += 1;
            false
        }
    }
}

/// The part of a `len`-byte table that a read of `length` bytes at `offset`
/// covers; `None` when it reaches past the end.
pub fn table_slice(len: usize, offset: u32, length: u32) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    (end <= len).then_some(start..end)
}
