// SPDX-License-Identifier: GPL-2.0
use crate::math::{chunk::ChunkGeometry, read_plan::*};

/// 4 chunks of 8 sectors, the last one 4 sectors long.
const G: ChunkGeometry = ChunkGeometry { capacity: 28, shift: 12, count: 4 };

fn piece(target: usize, sector: u64, sectors: usize) -> ReadPiece {
    ReadPiece { target, sector, len: sectors * 512 }
}

#[test]
fn chunks_in_place_make_one_run() {
    let plan = ReadPlan::new(&G, 3, 20, |c| Some((0, c * 8))).unwrap();
    assert_eq!(plan.pieces(), &[piece(0, 3, 20)]);
    assert!(plan.reads(0) && !plan.reads(1));
}

#[test]
fn runs_start_inside_a_chunk_where_the_read_does() {
    // Chunk 1 stored at 100, chunk 2 at 108: one run from 105.
    let plan = ReadPlan::new(&G, 13, 6, |c| Some((1, 92 + c * 8))).unwrap();
    assert_eq!(plan.pieces(), &[piece(1, 105, 6)]);
}

#[test]
fn chunks_apart_or_on_other_targets_make_runs_of_their_own() {
    let places = [(0, 0), (1, 40), (1, 8), (0, 24)];
    let plan = ReadPlan::new(&G, 6, 22, |c| Some(places[c as usize])).unwrap();
    assert_eq!(plan.pieces(), &[piece(0, 6, 2), piece(1, 40, 8), piece(1, 8, 8), piece(0, 24, 4)]);
    // Chunk 2 right after chunk 1 in the storage: they join.
    let places = [(0, 0), (1, 40), (1, 48), (0, 24)];
    let plan = ReadPlan::new(&G, 6, 22, |c| Some(places[c as usize])).unwrap();
    assert_eq!(plan.pieces(), &[piece(0, 6, 2), piece(1, 40, 16), piece(0, 24, 4)]);
}

#[test]
fn the_same_sectors_on_another_target_are_not_a_continuation() {
    let plan = ReadPlan::new(&G, 0, 16, |c| Some((c as usize, c * 8))).unwrap();
    assert_eq!(plan.pieces(), &[piece(0, 0, 8), piece(1, 8, 8)]);
}

#[test]
fn a_chunk_without_a_place_or_too_many_runs_give_no_plan() {
    assert!(ReadPlan::new(&G, 0, 28, |c| (c != 2).then_some((0, c * 8))).is_none());
    let g = ChunkGeometry { capacity: 8 * (MAX_RUNS as u64 + 1), shift: 12, count: MAX_RUNS as u64 + 1 };
    // Every chunk stored in reverse order: a run each.
    let apart = |c: u64| Some((1, 1000 - c * 8));
    assert_eq!(ReadPlan::new(&g, 0, 8 * MAX_RUNS as u64, apart).unwrap().pieces().len(), MAX_RUNS);
    assert!(ReadPlan::new(&g, 0, g.capacity, apart).is_none());
}
