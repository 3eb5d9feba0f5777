// SPDX-License-Identifier: GPL-2.0
//! Where the stored chunks of a device are in the difference storage: an
//! open-addressing hash table of 8-byte entries, so that a chunk costs 8 to
//! 22 bytes (the table is between 3/8 and 3/4 full) instead of a tree node.
//! Chunks are never removed while a snapshot lives.
//!
//! Plain `core` Rust, compiled into the module and unit-tested on the host.

use core::ops::{Deref, DerefMut};

use crate::math::cbt::SECTOR_SHIFT;

/// Stored chunks start on a 4 KiB boundary of the storage, counted in
/// 4 KiB pages: a storage of up to 16 TiB.
const PAGE_SECTORS_SHIFT: u32 = 12 - SECTOR_SHIFT;

/// The most chunks a device may have: an entry keeps `chunk + 1` in 32 bits.
pub const MAX_CHUNKS: u64 = u32::MAX as u64 - 1;

/// Entries of the first table.
pub const INITIAL_ENTRIES: usize = 64;

/// An entry: `chunk + 1` in the high half (0: free), the storage page in the
/// low half.
type Entry = u64;

/// How many sectors to take in the storage for a chunk of `sectors`: whole
/// pages, so that every chunk starts on a page.
pub fn storage_sectors(sectors: u64) -> u64 {
    let page = 1 << PAGE_SECTORS_SHIFT;
    sectors.div_ceil(page) * page
}

/// Why a chunk cannot be indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexError {
    /// The table must grow first (`ChunkIndex::grown`).
    Full,
    /// The chunk number or its storage sector is beyond what an entry holds,
    /// or the sector is not on a page.
    OutOfRange,
}

/// The table, in memory of type `T` (a vector of zeros).
pub struct ChunkIndex<T> {
    entries: T,
    count: usize,
}

impl<T: Deref<Target = [Entry]> + DerefMut> ChunkIndex<T> {
    /// An empty index in `entries`, zeros whose number is a power of two.
    pub fn new(entries: T) -> Self {
        debug_assert!(entries.len().is_power_of_two() && entries.iter().all(|e| *e == 0));
        Self { entries, count: 0 }
    }

    /// Chunks indexed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.count
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the table.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.entries.len() * core::mem::size_of::<Entry>()
    }

    /// How many entries the next table must have, when one more chunk would
    /// fill this one over 3/4; `None` while it has room.
    pub fn growth(&self) -> Option<usize> {
        let len = self.entries.len();
        ((self.count + 1) * 4 > len * 3).then(|| len * 2)
    }

    /// Move the index into `entries` (zeros, as many as `growth` said).
    pub fn grow(&mut self, entries: T) {
        debug_assert!(entries.len().is_power_of_two() && entries.iter().all(|e| *e == 0));
        let old = core::mem::replace(&mut self.entries, entries);
        for &entry in old.iter().filter(|e| **e != 0) {
            let slot = self.free_slot(entry >> 32);
            self.entries[slot] = entry;
        }
    }

    /// The first storage sector of chunk `chunk`, if it is indexed.
    pub fn get(&self, chunk: u64) -> Option<u64> {
        let key = chunk.checked_add(1).filter(|k| *k <= u64::from(u32::MAX))?;
        let mask = self.entries.len() - 1;
        let mut slot = home(key, self.entries.len());
        loop {
            let entry = self.entries[slot];
            if entry == 0 {
                return None;
            }
            if entry >> 32 == key {
                return Some((entry & u64::from(u32::MAX)) << PAGE_SECTORS_SHIFT);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Index chunk `chunk` as stored from `sector` on; a chunk already
    /// indexed keeps its place.
    pub fn insert(&mut self, chunk: u64, sector: u64) -> Result<(), IndexError> {
        if chunk >= MAX_CHUNKS || sector & ((1 << PAGE_SECTORS_SHIFT) - 1) != 0 {
            return Err(IndexError::OutOfRange);
        }
        let page = u32::try_from(sector >> PAGE_SECTORS_SHIFT).map_err(|_| IndexError::OutOfRange)?;
        if self.get(chunk).is_some() {
            return Ok(());
        }
        if self.growth().is_some() {
            return Err(IndexError::Full);
        }
        let key = chunk + 1;
        let slot = self.free_slot(key);
        self.entries[slot] = key << 32 | u64::from(page);
        self.count += 1;
        Ok(())
    }

    /// The free slot where `key` goes (the table is never full).
    fn free_slot(&self, key: u64) -> usize {
        let mask = self.entries.len() - 1;
        let mut slot = home(key, self.entries.len());
        while self.entries[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        slot
    }
}

/// Where the search for `key` starts in a table of `len` entries (a power
/// of two): Fibonacci hashing spreads the runs of neighbouring chunks that
/// writes store.
fn home(key: u64, len: usize) -> usize {
    let bits = len.trailing_zeros();
    key.wrapping_mul(0x9e37_79b9_7f4a_7c15).checked_shr(64 - bits).unwrap_or(0) as usize
}
