// SPDX-License-Identifier: GPL-2.0
//! The control device `/dev/blksnap-control`, a misc device registered by the
//! C shim (6.12 has no Rust misc device abstraction). Its ioctls arrive in
//! `crate::ctl::blksnap_control_ioctl`.

use kernel::error::{to_result, Result};

extern "C" {
    fn blksnap_control_register() -> core::ffi::c_int;
    fn blksnap_control_unregister();
}

/// The control device exists while this lives.
pub(crate) struct Registration(());

impl Registration {
    /// Create `/dev/blksnap-control`.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: called once, from module init; undone in drop.
        to_result(unsafe { blksnap_control_register() })?;
        Ok(Self(()))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered in `new`. misc_deregister() returns once no
        // new open can start; open files keep the module pinned.
        unsafe { blksnap_control_unregister() };
    }
}
