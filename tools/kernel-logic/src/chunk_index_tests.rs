// SPDX-License-Identifier: GPL-2.0
extern crate std;
use crate::math::chunk_index::*;
use std::{collections::HashMap, vec, vec::Vec};

fn empty() -> ChunkIndex<Vec<u64>> {
    ChunkIndex::new(vec![0; INITIAL_ENTRIES])
}

/// Insert, growing the table when it asks to.
fn insert(index: &mut ChunkIndex<Vec<u64>>, chunk: u64, sector: u64) {
    if let Some(len) = index.growth() {
        index.grow(vec![0; len]);
    }
    index.insert(chunk, sector).unwrap();
}

#[test]
fn finds_what_was_inserted_and_nothing_else() {
    let mut index = empty();
    assert!(index.is_empty());
    assert_eq!(index.get(0), None);
    index.insert(0, 0).unwrap();
    index.insert(7, 8).unwrap();
    index.insert(MAX_CHUNKS - 1, (u64::from(u32::MAX)) << 3).unwrap();
    assert_eq!(index.get(0), Some(0));
    assert_eq!(index.get(7), Some(8));
    assert_eq!(index.get(MAX_CHUNKS - 1), Some(u64::from(u32::MAX) << 3));
    assert_eq!(index.get(1), None);
    assert_eq!(index.get(u64::MAX), None);
    assert_eq!(index.len(), 3);
}

#[test]
fn a_chunk_keeps_its_first_place() {
    let mut index = empty();
    index.insert(5, 16).unwrap();
    index.insert(5, 64).unwrap();
    assert_eq!((index.get(5), index.len()), (Some(16), 1));
}

#[test]
fn refuses_what_an_entry_cannot_hold() {
    let mut index = empty();
    assert_eq!(index.insert(MAX_CHUNKS, 0), Err(IndexError::OutOfRange));
    assert_eq!(index.insert(1, 4), Err(IndexError::OutOfRange));
    assert_eq!(index.insert(1, 1 << 35), Err(IndexError::OutOfRange));
    assert!(index.is_empty());
}

#[test]
fn asks_to_grow_at_three_quarters() {
    let mut index = empty();
    for chunk in 0..48 {
        assert_eq!(index.growth(), None);
        index.insert(chunk, chunk * 8).unwrap();
    }
    assert_eq!(index.growth(), Some(128));
    assert_eq!(index.insert(48, 0), Err(IndexError::Full));
    // Already there: no room needed.
    assert_eq!(index.insert(3, 0), Ok(()));
    index.grow(vec![0; 128]);
    assert_eq!(index.growth(), None);
    assert_eq!(index.bytes(), 1024);
    assert!((0..48).all(|c| index.get(c) == Some(c * 8)));
}

#[test]
fn matches_a_map_under_many_inserts() {
    let mut index = empty();
    let mut map = HashMap::new();
    let mut x: u64 = 0x1234_5678;
    for i in 0..100_000u64 {
        // Runs of neighbouring chunks and scattered ones.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let chunk = if i % 3 == 0 { i } else { x % 4_000_000 };
        let sector = map.len() as u64 * 512;
        if let std::collections::hash_map::Entry::Vacant(e) = map.entry(chunk) {
            e.insert(sector);
        }
        insert(&mut index, chunk, sector);
    }
    assert_eq!(index.len(), map.len());
    assert!(map.iter().all(|(c, s)| index.get(*c) == Some(*s)));
    assert!((4_000_000..4_001_000).all(|c| index.get(c).is_none()));
    // At most 3/4 full, at least 3/8 after a growth: 8 to 22 bytes a chunk.
    let per_chunk = index.bytes() as f64 / index.len() as f64;
    assert!((8.0..=22.0).contains(&per_chunk), "{per_chunk} bytes a chunk");
}

#[test]
fn storage_takes_whole_pages() {
    assert_eq!(storage_sectors(512), 512);
    assert_eq!(storage_sectors(3), 8);
    assert_eq!(storage_sectors(9), 16);
    assert_eq!(storage_sectors(0), 0);
}
