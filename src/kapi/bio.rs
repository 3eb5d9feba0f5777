// SPDX-License-Identifier: GPL-2.0
//! Bios (`struct bio`) seen by a block device filter.

use kernel::{bindings, types::Opaque};

/// A bio on its way to a filtered device.
///
/// # Invariants
///
/// The wrapped `struct bio` is live and not yet submitted further for as long
/// as the borrow.
#[repr(transparent)]
pub(crate) struct Bio(Opaque<bindings::bio>);

impl Bio {
    /// Borrow the bio at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points to a live bio that nobody else submits or ends for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a Self {
        // SAFETY: `Bio` is a transparent wrapper; the caller guarantees
        // the bio is live for `'a`.
        unsafe { &*ptr.cast() }
    }
}
