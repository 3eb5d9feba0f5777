// SPDX-License-Identifier: GPL-2.0
//! How a read of a snapshot image is split into runs, each read from one
//! device: chunk by chunk, consecutive chunks that lie one after the other
//! on the same device making one run.
//!
//! Plain `core` Rust, compiled into the module and unit-tested on the host.

use crate::math::{cbt::SECTOR_SHIFT, chunk::ChunkGeometry};

/// The most runs a read is split into.
pub const MAX_RUNS: usize = 16;

/// A run of a read: its next `len` bytes (whole sectors), from `sector` on
/// the device `target` (an index into the caller's devices).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadPiece {
    pub target: usize,
    pub sector: u64,
    pub len: usize,
}

/// The runs of one read, in its order.
#[derive(Debug, Default)]
pub struct ReadPlan {
    pieces: [ReadPiece; MAX_RUNS],
    n: usize,
}

impl ReadPlan {
    /// Plan the read of `count` sectors from `sector` of a device of
    /// `geometry` (inside it): `place` says for each chunk touched on which
    /// target, from which sector there, the chunk's data is, or `None` if
    /// the read cannot be planned. `None` too if it takes more than
    /// `MAX_RUNS` runs.
    pub fn new(
        geometry: &ChunkGeometry,
        sector: u64,
        count: u64,
        mut place: impl FnMut(u64) -> Option<(usize, u64)>,
    ) -> Option<Self> {
        let mut plan = Self::default();
        let mut at = sector;
        for chunk in geometry.chunks(sector, count) {
            let (first, sectors) = geometry.chunk_sectors(chunk);
            let end = (first + sectors).min(sector + count);
            let (target, base) = place(chunk)?;
            plan.push(target, base + (at - first), ((end - at) << SECTOR_SHIFT) as usize)?;
            at = end;
        }
        Some(plan)
    }

    /// Add `len` bytes from `sector` of `target`, to the last run if they
    /// follow it there; `None` when the runs are too many.
    fn push(&mut self, target: usize, sector: u64, len: usize) -> Option<()> {
        if let Some(last) = self.n.checked_sub(1).map(|i| &mut self.pieces[i]) {
            if last.target == target && last.sector + (last.len >> SECTOR_SHIFT) as u64 == sector {
                last.len += len;
                return Some(());
            }
        }
        *self.pieces.get_mut(self.n)? = ReadPiece { target, sector, len };
        self.n += 1;
        Some(())
    }

    pub fn pieces(&self) -> &[ReadPiece] {
        &self.pieces[..self.n]
    }

    /// Whether some run is on `target`.
    pub fn reads(&self, target: usize) -> bool {
        self.pieces().iter().any(|p| p.target == target)
    }
}
