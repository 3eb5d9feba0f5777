// SPDX-License-Identifier: GPL-2.0
//! Module parameters. The C shim declares them (6.12's `module!` cannot);
//! this reads their current values.

/// The parameters that bound the change tracking block.
///
/// Must match `struct blksnap_tracking_params` in `src/shim.h`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct TrackingParams {
    pub(crate) block_minimum_shift: u32,
    pub(crate) block_maximum_count: u32,
    pub(crate) block_maximum_shift: u32,
}

/// The parameters of copy-on-write and the difference storage.
///
/// Must match `struct blksnap_snapshot_params` in `src/shim.h`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct SnapshotParams {
    pub(crate) chunk_minimum_shift: u32,
    pub(crate) chunk_maximum_count_shift: u32,
    pub(crate) chunk_maximum_shift: u32,
    pub(crate) chunk_maximum_in_queue: u32,
    pub(crate) diff_storage_minimum: u32,
}

/// Where the test-only delay (parameters `debug_delay_point` and
/// `debug_delay_ms`) may hold a race window open.
///
/// Must match `enum blksnap_delay_point` in `src/shim.h`.
#[derive(Clone, Copy)]
#[repr(u32)]
pub(crate) enum DelayPoint {
    /// A write is in the filter; its copy-on-write is not decided yet.
    CowDecision = 1,
    /// SNAPSHOTADD or TAKE found the snapshot and has not locked it yet.
    SnapshotFound = 2,
}

extern "C" {
    fn blksnap_debug_delay(point: u32);
    fn blksnap_tracking_params(params: *mut TrackingParams);
    fn blksnap_snapshot_params(params: *mut SnapshotParams);
}

/// Sleep here if the test-only delay is set for `point`.
pub(crate) fn debug_delay(point: DelayPoint) {
    // SAFETY: called where the task may sleep; the C side only reads the
    // parameters.
    unsafe { blksnap_debug_delay(point as u32) };
}

/// The tracking parameters now (they are writable in sysfs).
pub(crate) fn tracking() -> TrackingParams {
    let mut params = TrackingParams::default();
    // SAFETY: `params` is a valid `TrackingParams`, whose layout the C side
    // shares.
    unsafe { blksnap_tracking_params(&mut params) };
    params
}

/// The snapshot parameters now.
pub(crate) fn snapshot() -> SnapshotParams {
    let mut params = SnapshotParams::default();
    // SAFETY: `params` is a valid `SnapshotParams`, whose layout the C side
    // shares.
    unsafe { blksnap_snapshot_params(&mut params) };
    params
}
