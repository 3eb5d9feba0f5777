// SPDX-License-Identifier: GPL-2.0
//! Copy-on-write chunk arithmetic: the chunk size of a device and which
//! chunks a range of sectors touches.
//!
//! Plain `core` Rust, compiled into the module and unit-tested on the host.

use core::ops::Range;

use crate::math::{cbt::SECTOR_SHIFT, chunk_index::MAX_CHUNKS};

/// The module parameters that bound the chunk size.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    /// Smallest chunk: 2^shift bytes.
    pub min_shift: u32,
    /// Largest chunk: 2^shift bytes.
    pub max_shift: u32,
    /// At most 2^count_shift chunks per device before the chunk grows.
    pub max_count_shift: u32,
}

/// Chunks of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkGeometry {
    /// Device capacity in sectors.
    pub capacity: u64,
    /// A chunk is 2^shift bytes.
    pub shift: u32,
    /// Chunks covering the device (the last may be partial).
    pub count: u64,
}

/// Smallest chunk: a chunk is kept in whole pages.
const PAGE_SHIFT: u32 = 12;
/// Largest chunk this code accepts, whatever the parameters say (1 GiB).
const MAX_SHIFT: u32 = 30;

impl ChunkGeometry {
    /// The smallest chunk size within `limits`, never below a page nor the
    /// device's `io_min` bytes, for which the device has at most
    /// 2^`max_count_shift` chunks (and at most `MAX_CHUNKS`, what the chunk
    /// index holds); at the largest size, whatever count that gives.
    pub fn new(capacity: u64, io_min: u32, limits: &ChunkLimits) -> Self {
        let io_min_shift = io_min.max(1).next_power_of_two().trailing_zeros();
        let max_shift = limits.max_shift.clamp(PAGE_SHIFT, MAX_SHIFT);
        let mut shift = limits.min_shift.max(io_min_shift).clamp(PAGE_SHIFT, max_shift);
        let max_count = (1u64 << limits.max_count_shift.min(63)).min(MAX_CHUNKS);
        while count_of(capacity, shift) > max_count && shift < max_shift {
            shift += 1;
        }
        Self {
            capacity,
            shift,
            count: count_of(capacity, shift),
        }
    }

    /// Sectors per chunk.
    pub fn sectors(&self) -> u64 {
        1 << (self.shift - SECTOR_SHIFT)
    }

    /// Chunks that sectors `[sector, sector + count)` touch, clipped to the
    /// device.
    pub fn chunks(&self, sector: u64, count: u64) -> Range<u64> {
        if count == 0 {
            return 0..0;
        }
        let shift = self.shift - SECTOR_SHIFT;
        let first = sector >> shift;
        let end = (sector.saturating_add(count - 1) >> shift)
            .saturating_add(1)
            .min(self.count);
        first.min(end)..end
    }

    /// First sector and number of sectors of chunk `index` (the last chunk
    /// ends at the end of the device).
    pub fn chunk_sectors(&self, index: u64) -> (u64, u64) {
        let start = index << (self.shift - SECTOR_SHIFT);
        (start, self.sectors().min(self.capacity.saturating_sub(start)))
    }
}

/// The part of a byte range that lies in one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPart {
    /// The chunk.
    pub chunk: u64,
    /// Where the part starts in the chunk, in bytes.
    pub offset: usize,
    /// Where the part is in the range, in bytes.
    pub bytes: Range<usize>,
}

impl ChunkGeometry {
    /// The parts of the `len` bytes at device byte `pos`, chunk by chunk.
    pub fn parts(&self, pos: u64, len: usize) -> impl Iterator<Item = ChunkPart> {
        let shift = self.shift;
        let chunk_bytes = 1usize << shift;
        let mut done = 0;
        core::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let at = pos + done as u64;
            let offset = (at & (chunk_bytes as u64 - 1)) as usize;
            let n = (chunk_bytes - offset).min(len - done);
            let part = ChunkPart {
                chunk: at >> shift,
                offset,
                bytes: done..done + n,
            };
            done += n;
            Some(part)
        })
    }
}

fn count_of(capacity: u64, shift: u32) -> u64 {
    let per_chunk = shift - SECTOR_SHIFT;
    (capacity >> per_chunk) + u64::from(capacity & ((1 << per_chunk) - 1) != 0)
}
