// SPDX-License-Identifier: GPL-2.0
//! No-I/O allocation scopes (`memalloc_noio_save()`): allocations on the
//! I/O path must not recurse into reclaim that writes to the device being
//! copied.

extern "C" {
    fn blksnap_noio_save() -> core::ffi::c_uint;
    fn blksnap_noio_restore(flags: core::ffi::c_uint);
}

/// While this lives, the task's allocations behave as GFP_NOIO.
pub(crate) struct NoIo {
    saved: core::ffi::c_uint,
    // The scope belongs to the task that made it.
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl NoIo {
    pub(crate) fn enter() -> Self {
        Self {
            // SAFETY: changes only the current task's flags; restored in drop
            // on the same task (the guard is not `Send`).
            saved: unsafe { blksnap_noio_save() },
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for NoIo {
    fn drop(&mut self) {
        // SAFETY: `saved` came from `blksnap_noio_save` on this task.
        unsafe { blksnap_noio_restore(self.saved) };
    }
}
