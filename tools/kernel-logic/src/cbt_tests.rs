// SPDX-License-Identifier: GPL-2.0
use crate::math::cbt::*;

const DEFAULTS: CbtLimits = CbtLimits {
    min_shift: 16,
    max_shift: 26,
    max_count: 2097152,
};
const GIB: u64 = 1 << 21; // sectors

#[test]
fn geometry_uses_the_smallest_block_that_fits() {
    let g = CbtGeometry::new(GIB, &DEFAULTS);
    assert_eq!((g.block_shift, g.block_count), (16, 16384));
    // 2097152 blocks of 64 KiB is 128 GiB: one sector more doubles the block.
    let g = CbtGeometry::new(128 * GIB, &DEFAULTS);
    assert_eq!((g.block_shift, g.block_count), (16, 2097152));
    let g = CbtGeometry::new(128 * GIB + 1, &DEFAULTS);
    assert_eq!((g.block_shift, g.block_count), (17, 1048577));
}

#[test]
fn geometry_caps_the_block_size() {
    let limits = CbtLimits { max_count: 4, ..DEFAULTS };
    let g = CbtGeometry::new(1024 * GIB, &limits);
    assert_eq!(g.block_shift, 26);
    assert_eq!(g.block_count, (1024 * GIB) >> (26 - 9));
}

#[test]
fn geometry_partial_last_block_and_empty_device() {
    let g = CbtGeometry::new(129, &DEFAULTS);
    assert_eq!(g.block_count, 2);
    assert_eq!(CbtGeometry::new(0, &DEFAULTS).block_count, 0);
}

#[test]
fn geometry_clamps_nonsense_parameters() {
    let g = CbtGeometry::new(GIB, &CbtLimits { min_shift: 0, max_shift: 99, max_count: u64::MAX });
    assert_eq!(g.block_shift, SECTOR_SHIFT);
    let g = CbtGeometry::new(GIB, &CbtLimits { min_shift: 40, max_shift: 20, max_count: 1 });
    assert_eq!(g.block_shift, 20);
    assert_eq!(g.block_size(), 1 << 20);
}

#[test]
fn blocks_of_a_sector_range() {
    let g = CbtGeometry::new(GIB, &DEFAULTS); // 128 sectors a block
    assert_eq!(g.blocks(0, 1), 0..1);
    assert_eq!(g.blocks(127, 1), 0..1);
    assert_eq!(g.blocks(127, 2), 0..2);
    assert_eq!(g.blocks(128, 128), 1..2);
    assert_eq!(g.blocks(100, 0), 0..0);
    // Clipped at the end, and past it empty.
    assert_eq!(g.blocks(GIB - 1, 100), 16383..16384);
    assert!(g.blocks(GIB, 8).is_empty());
    assert!(g.blocks(u64::MAX, u64::MAX).is_empty());
}

#[test]
fn switch_copies_and_numbers() {
    let mut n = CbtNumbers::new();
    let (mut w, mut r) = ([0u8; 4], [0u8; 4]);
    w[1] = n.active();
    assert!(!n.switch(&mut w, &mut r, false));
    assert_eq!((r, n.previous(), n.active()), ([0, 1, 0, 0], 1, 2));
    w[3] = n.active();
    assert!(!n.switch(&mut w, &mut r, false));
    assert_eq!((r, n.previous()), ([0, 1, 0, 2], 2));
}

#[test]
fn switch_resets_both_tables_when_numbers_run_out() {
    let mut n = CbtNumbers::new();
    let (mut w, mut r) = ([0u8; 2], [0u8; 2]);
    for take in 1..=254u8 {
        w[0] = n.active();
        assert!(!n.switch(&mut w, &mut r, false), "take {take}");
        assert_eq!(n.previous(), take);
        assert!(n.active() > n.previous());
    }
    w[1] = n.active();
    assert!(n.switch(&mut w, &mut r, false));
    assert_eq!((w, r, n), ([0, 0], [0, 0], CbtNumbers::new()));
}

#[test]
fn switch_resets_on_request() {
    let mut n = CbtNumbers::new();
    let (mut w, mut r) = ([5u8; 3], [4u8; 3]);
    assert!(n.switch(&mut w, &mut r, true));
    assert_eq!((w, r), ([0; 3], [0; 3]));
}

#[test]
fn table_slice_bounds() {
    assert_eq!(table_slice(100, 0, 100), Some(0..100));
    assert_eq!(table_slice(100, 90, 10), Some(90..100));
    assert_eq!(table_slice(100, 90, 11), None);
    assert_eq!(table_slice(100, 100, 0), Some(100..100));
    assert_eq!(table_slice(100, 100, 1), None);
    assert_eq!(table_slice(100, 101, 0), None);
    assert_eq!(table_slice(100, u32::MAX, u32::MAX), None);
}
