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

extern "C" {
    fn blksnap_tracking_params(params: *mut TrackingParams);
    fn blksnap_snapshot_params(params: *mut SnapshotParams);
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
