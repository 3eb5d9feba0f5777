// SPDX-License-Identifier: GPL-2.0
//! blksnap's own workqueue. Copy-on-write runs in the writeback path, so the
//! queue has a rescuer (WQ_MEM_RECLAIM); destroying it at module exit drains
//! every work item before the module's code goes away.

use core::ptr::NonNull;
use kernel::{bindings, c_str, prelude::*, workqueue::Queue};

/// An allocated workqueue, destroyed on drop.
///
/// # Invariants
///
/// `raw` is a live workqueue until drop.
pub(crate) struct OwnedQueue {
    raw: NonNull<bindings::workqueue_struct>,
}

impl OwnedQueue {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the format string has no conversions, so no variadic
        // arguments are read.
        let raw = unsafe {
            bindings::alloc_workqueue(
                c_str!("blksnap").as_char_ptr(),
                bindings::wq_flags_WQ_UNBOUND | bindings::wq_flags_WQ_MEM_RECLAIM,
                0,
            )
        };
        Ok(Self {
            raw: NonNull::new(raw).ok_or(ENOMEM)?,
        })
    }

    pub(crate) fn queue(&self) -> &Queue {
        // SAFETY: by the type invariant the queue is live while `self` is.
        unsafe { Queue::from_raw(self.raw.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the queue is live; nothing uses it
        // after this (its owner is being dropped).
        unsafe { bindings::destroy_workqueue(self.raw.as_ptr()) };
    }
}

// SAFETY: a workqueue may be used and destroyed from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: `Queue` is `Sync`; `&OwnedQueue` only gives out `&Queue`.
unsafe impl Sync for OwnedQueue {}
