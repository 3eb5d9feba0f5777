// SPDX-License-Identifier: GPL-2.0
//! Block devices (`struct block_device`).

use kernel::{bindings, types::Opaque};

/// A block device, borrowed from the block layer.
///
/// # Invariants
///
/// The wrapped `struct block_device` is live for as long as the borrow.
#[repr(transparent)]
pub(crate) struct BlockDevice(Opaque<bindings::block_device>);

impl BlockDevice {
    /// Borrow the block device at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points to a `struct block_device` that stays live for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::block_device) -> &'a Self {
        // SAFETY: `BlockDevice` is a transparent wrapper, and the caller
        // guarantees that the device is live for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// The device number as (major, minor).
    pub(crate) fn dev_id(&self) -> (u32, u32) {
        // SAFETY: by the type invariant the device is live; `bd_dev` is set
        // when it is created and never changes.
        let dev = unsafe { (*self.0.get()).bd_dev };
        (dev >> bindings::MINORBITS, dev & ((1 << bindings::MINORBITS) - 1))
    }

    /// Capacity in 512-byte sectors.
    pub(crate) fn nr_sectors(&self) -> u64 {
        // SAFETY: by the type invariant the device is live. The size may
        // change concurrently (resize); a plain read of the aligned u64 is
        // what bdev_nr_sectors() does as well.
        unsafe { (*self.0.get()).bd_nr_sectors }
    }
}
