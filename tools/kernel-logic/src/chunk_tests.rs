// SPDX-License-Identifier: GPL-2.0
extern crate std;
use crate::math::chunk::*;
use std::vec::Vec;

const DEFAULTS: ChunkLimits = ChunkLimits {
    min_shift: 18,
    max_shift: 26,
    max_count_shift: 40,
};
const GIB: u64 = 1 << 21; // sectors

#[test]
fn chunk_size_from_parameters() {
    let g = ChunkGeometry::new(GIB, 512, &DEFAULTS);
    assert_eq!((g.shift, g.count, g.sectors()), (18, 4096, 512));
}

#[test]
fn chunk_never_below_io_min_or_a_page() {
    assert_eq!(ChunkGeometry::new(GIB, 1 << 20, &DEFAULTS).shift, 20);
    // A non-power-of-two io_min rounds up.
    assert_eq!(ChunkGeometry::new(GIB, 3 << 18, &DEFAULTS).shift, 20);
    let tiny = ChunkLimits { min_shift: 9, ..DEFAULTS };
    assert_eq!(ChunkGeometry::new(GIB, 512, &tiny).shift, 12);
}

#[test]
fn chunk_grows_until_the_count_fits_and_stops_at_the_maximum() {
    let few = ChunkLimits { max_count_shift: 10, ..DEFAULTS };
    let g = ChunkGeometry::new(GIB, 512, &few);
    assert_eq!((g.shift, g.count), (20, 1024));
    let capped = ChunkLimits { max_count_shift: 0, max_shift: 22, ..DEFAULTS };
    let g = ChunkGeometry::new(GIB, 512, &capped);
    assert_eq!((g.shift, g.count), (22, 256));
}

#[test]
fn chunks_of_a_range_are_clipped() {
    let g = ChunkGeometry::new(1000, 512, &DEFAULTS); // 512 sectors a chunk
    assert_eq!(g.count, 2);
    assert_eq!(g.chunks(0, 1), 0..1);
    assert_eq!(g.chunks(511, 2), 0..2);
    assert_eq!(g.chunks(512, 0), 0..0);
    assert_eq!(g.chunks(999, 100), 1..2);
    assert_eq!(g.chunks(5000, 8), 2..2);
    assert_eq!(g.chunks(u64::MAX - 1, u64::MAX), 2..2);
    assert_eq!(g.chunk_sectors(0), (0, 512));
    // The last chunk ends with the device.
    assert_eq!(g.chunk_sectors(1), (512, 488));
}

#[test]
fn parts_split_a_byte_range_at_chunk_borders() {
    let g = ChunkGeometry::new(GIB, 512, &DEFAULTS); // 256 KiB chunks
    let c = 1 << 18;
    let parts: Vec<_> = g.parts(c as u64 - 1024, 4096).collect();
    assert_eq!(
        parts,
        [
            ChunkPart { chunk: 0, offset: c - 1024, bytes: 0..1024 },
            ChunkPart { chunk: 1, offset: 0, bytes: 1024..4096 },
        ]
    );
    assert_eq!(g.parts(0, 0).count(), 0);
    let parts: Vec<_> = g.parts(3 * c as u64, 2 * c + 1).collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2], ChunkPart { chunk: 5, offset: 0, bytes: 2 * c..2 * c + 1 });
}

#[test]
fn chunk_grows_until_the_index_holds_every_chunk() {
    // 2 PiB at 256 KiB would be 2^33 chunks.
    let g = ChunkGeometry::new(1 << 42, 512, &DEFAULTS);
    assert_eq!((g.shift, g.count), (20, 1 << 31));
    assert!(g.count <= crate::math::chunk_index::MAX_CHUNKS);
}
