// SPDX-License-Identifier: GPL-2.0
//! The checksums of a restore point, NAME.ID.sums: one 128-bit XXH3 per
//! block of the device as the point holds it, so that `verify` can check a
//! point without its snapshot, and a checksum incremental backup can tell
//! which blocks changed without change tracking.
//!
//! Layout: a 16-byte magic, the block size and the device size (u64, little
//! endian), then the checksums in block order (u128, little endian).

use crate::copy::NewFile;
use anyhow::Result;
use std::path::Path;
use xxhash_rust::xxh3::xxh3_128;

const MAGIC: &[u8; 16] = b"blksnap-sums\0\0\0\x01";
const HEADER: usize = 32;
const SUM: usize = 16;

/// Checksums of every block of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sums {
    pub block_size: u64,
    pub capacity: u64,
    sums: Vec<u128>,
}

/// The checksum of one block's data.
pub fn of(data: &[u8]) -> u128 {
    xxh3_128(data)
}

impl Sums {
    /// Checksums of a device of `capacity` bytes, all zero until set.
    pub fn new(block_size: u64, capacity: u64) -> Self {
        Self {
            block_size,
            capacity,
            sums: vec![0; capacity.div_ceil(block_size) as usize],
        }
    }

    pub fn len(&self) -> u64 {
        self.sums.len() as u64
    }

    pub fn get(&self, block: u64) -> u128 {
        self.sums[block as usize]
    }

    pub fn set(&mut self, block: u64, sum: u128) {
        self.sums[block as usize] = sum;
    }

    /// The bytes of `block`, the last one cut at the device's end.
    pub fn range(&self, block: u64) -> std::ops::Range<u64> {
        let start = block * self.block_size;
        start..(start + self.block_size).min(self.capacity)
    }

    /// Whether these checksums fit a device of `capacity` bytes in blocks of
    /// `block_size`.
    pub fn fits(&self, block_size: u64, capacity: u64) -> bool {
        (self.block_size, self.capacity) == (block_size, capacity)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| crate::failed("cannot read", path.display(), e))?;
        let bad = |why: &str| anyhow::anyhow!("{} is not a checksum file: {why}", path.display());
        if data.len() < HEADER || &data[..16] != MAGIC {
            return Err(bad("no header"));
        }
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let (block_size, capacity) = (word(16), word(24));
        if !block_size.is_power_of_two() || block_size < 512 {
            return Err(bad("bad block size"));
        }
        let body = &data[HEADER..];
        if body.len() as u64 != capacity.div_ceil(block_size) * SUM as u64 {
            return Err(bad("wrong length"));
        }
        let sums = body
            .chunks_exact(SUM)
            .map(|s| u128::from_le_bytes(s.try_into().expect("16 bytes")))
            .collect();
        Ok(Self {
            block_size,
            capacity,
            sums,
        })
    }

    /// Write the checksums to `path`, replacing it only once on disk.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut data = Vec::with_capacity(HEADER + self.sums.len() * SUM);
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&self.block_size.to_le_bytes());
        data.extend_from_slice(&self.capacity.to_le_bytes());
        for sum in &self.sums {
            data.extend_from_slice(&sum.to_le_bytes());
        }
        let file = NewFile::create(path)?;
        file.write_at(&data, 0)?;
        file.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sums");
        let mut sums = Sums::new(65536, 3 * 65536 + 512);
        assert_eq!(sums.len(), 4);
        assert_eq!(sums.range(3), 3 * 65536..3 * 65536 + 512);
        sums.set(1, of(b"one"));
        sums.set(3, u128::MAX);
        sums.save(&path).unwrap();
        let back = Sums::load(&path).unwrap();
        assert_eq!(back, sums);
        assert!(back.fits(65536, 3 * 65536 + 512));
        assert!(!back.fits(65536, 4 * 65536));
        assert_ne!(of(b"one"), of(b"two"));

        let mut data = std::fs::read(&path).unwrap();
        data.pop();
        std::fs::write(&path, &data).unwrap();
        assert!(Sums::load(&path)
            .unwrap_err()
            .to_string()
            .contains("wrong length"));
        data[0] = b'x';
        std::fs::write(&path, &data).unwrap();
        assert!(Sums::load(&path).unwrap_err().to_string().contains("no header"));
    }
}
