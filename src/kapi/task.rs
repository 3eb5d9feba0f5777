// SPDX-License-Identifier: GPL-2.0
//! The current task: no-I/O allocation scopes
//! (`memalloc_noio_save()`), in which allocations on the I/O path do not
//! recurse into reclaim that writes to the device being copied, plugs, and
//! voluntary rescheduling.

use kernel::bindings;

extern "C" {
    fn blksnap_cond_resched();
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

/// Let other tasks run if this one has run long (a loop over user input).
pub(crate) fn cond_resched() {
    // SAFETY: called in process context without locks held (the callers
    // are ioctls).
    unsafe { blksnap_cond_resched() };
}

/// Run `f` with the task's bios held back in a plug, and sent to the drivers
/// together when it returns (or when the task sleeps): a device is told
/// once about them, not once a bio.
pub(crate) fn plugged<R>(f: impl FnOnce() -> R) -> R {
    let mut plug = core::mem::MaybeUninit::<bindings::blk_plug>::uninit();
    // SAFETY: the plug stays in this frame, not moved, from its start
    // (which initialises it) to its finish, which takes it off the task.
    unsafe { bindings::blk_start_plug(plug.as_mut_ptr()) };
    let result = f();
    // SAFETY: as above; started on this task, which is still in this frame.
    unsafe { bindings::blk_finish_plug(plug.as_mut_ptr()) };
    result
}
