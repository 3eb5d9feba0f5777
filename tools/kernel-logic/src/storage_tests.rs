// SPDX-License-Identifier: GPL-2.0
use crate::math::storage::*;

#[test]
fn allocations_are_contiguous_until_full() {
    let mut s = StorageSpace::new(1024, 4096, 1024);
    assert_eq!(s.alloc(512), Some(0));
    assert_eq!(s.alloc(512), Some(512));
    assert_eq!(s.alloc(1), None);
    assert_eq!(s.alloc(u64::MAX), None);
    assert_eq!(s.used, 1024);
}

#[test]
fn grows_below_half_a_step_up_to_the_limit() {
    let mut s = StorageSpace::new(0, 2500, 1000);
    assert_eq!(s.growth(), Growth::Grow(1000));
    s.grown(1000);
    assert_eq!(s.growth(), Growth::None);
    s.alloc(501).unwrap();
    assert_eq!(s.growth(), Growth::Grow(1000));
    s.grown(1000);
    s.alloc(1000).unwrap();
    // The last step is cut at the limit.
    assert_eq!(s.growth(), Growth::Grow(500));
    s.grown(500);
    s.alloc(600).unwrap();
    assert_eq!(s.growth(), Growth::LimitReached);
    assert_eq!(s.capacity, 2500);
}

#[test]
fn limit_never_below_existing_capacity() {
    // A preallocated file (or a block device) larger than the limit keeps
    // its size and does not grow.
    let mut s = StorageSpace::new(2048, 1024, 1024);
    assert_eq!(s.limit, 2048);
    s.alloc(2000).unwrap();
    assert_eq!(s.growth(), Growth::LimitReached);
    s.grown(10);
    assert_eq!(s.capacity, 2048);
}

#[test]
fn next_step_regardless_of_free_space() {
    // A chunk larger than half a step must still make the storage grow.
    let mut s = StorageSpace::new(0, 3000, 1000);
    assert_eq!(s.next_step(), Some(1000));
    s.grown(2500);
    assert_eq!(s.next_step(), Some(500));
    s.grown(500);
    assert_eq!(s.next_step(), None);
}

#[test]
fn requested_is_the_total_size_asked_for() {
    let mut s = StorageSpace::new(100, 400, 40);
    assert_eq!(s.alloc(90), Some(0));
    // Low on space: a step beyond the capacity.
    assert_eq!(s.requested(0), 140);
    // An allocation larger than a step asks for what it needs.
    assert_eq!(s.requested(60), 150);
    // Never past the limit: at the limit, the limit.
    assert_eq!(s.requested(1000), 400);
    s.grown(300);
    assert_eq!(s.requested(0), 400);
}
