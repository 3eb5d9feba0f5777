// SPDX-License-Identifier: GPL-2.0
//! The control surface: ioctls decoded into typed requests, replies encoded
//! back, errors turned into errno values.

use core::mem::size_of;
use kernel::{prelude::*, uaccess::UserSlice};

use crate::{
    kapi::{errno, uapi::*},
    tracker::Tracker,
};

/// An ioctl of `/dev/blksnap-control`, called by the C shim.
#[no_mangle]
extern "C" fn blksnap_control_ioctl(cmd: u32, arg: usize) -> core::ffi::c_long {
    match control_ioctl(cmd, arg) {
        Ok(()) => 0,
        Err(e) => e.to_errno().into(),
    }
}

fn control_ioctl(cmd: u32, arg: usize) -> Result {
    match cmd {
        IOCTL_BLKSNAP_VERSION => {
            UserSlice::new(arg, size_of::<BlksnapVersion>())
                .writer()
                .write(&BLKSNAP_VERSION)
        }
        _ => Err(ENOTTY),
    }
}

/// A command of the blksnap filter (BLKFILTER_CTL) for `tracker`; returns the
/// number of bytes produced in `buf`.
pub(crate) fn tracker_ctl(_tracker: &Tracker, cmd: u32, _buf: UserSlice) -> Result<u32> {
    match BlkfilterCtlBlksnap::from_u32(cmd) {
        // Change tracking and snapshot commands come with the CBT map.
        Some(_) => Err(errno::eopnotsupp()),
        None => Err(ENOTTY),
    }
}
