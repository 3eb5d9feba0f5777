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

extern "C" {
    fn blksnap_tracking_params(params: *mut TrackingParams);
}

/// The tracking parameters now (they are writable in sysfs).
pub(crate) fn tracking() -> TrackingParams {
    let mut params = TrackingParams::default();
    // SAFETY: `params` is a valid `TrackingParams`, whose layout the C side
    // shares.
    unsafe { blksnap_tracking_params(&mut params) };
    params
}
