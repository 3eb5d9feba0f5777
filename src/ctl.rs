// SPDX-License-Identifier: GPL-2.0
//! The control surface: ioctls decoded into typed requests, replies encoded
//! back, errors turned into errno values.

use core::mem::size_of;
use kernel::{
    prelude::*,
    types::{AsBytes, FromBytes},
    uaccess::UserSlice,
};

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

/// Read a request of type `T` from the start of `buf`; EINVAL when `buf` is
/// too short for it.
fn read_request<T: FromBytes>(buf: UserSlice) -> Result<T> {
    let mut reader = buf.reader();
    if reader.len() < size_of::<T>() {
        return Err(EINVAL);
    }
    reader.read()
}

/// Write `reply` to the start of `buf`; returns its size. EINVAL when `buf`
/// is too short for it.
fn write_reply<T: AsBytes>(buf: UserSlice, reply: &T) -> Result<u32> {
    let mut writer = buf.writer();
    if writer.len() < size_of::<T>() {
        return Err(EINVAL);
    }
    writer.write(reply)?;
    Ok(size_of::<T>() as u32)
}

/// A command of the blksnap filter (BLKFILTER_CTL) for `tracker`; returns the
/// number of bytes produced in `buf`.
pub(crate) fn tracker_ctl(tracker: &Tracker, cmd: u32, buf: UserSlice) -> Result<u32> {
    match BlkfilterCtlBlksnap::from_u32(cmd).ok_or(ENOTTY)? {
        BlkfilterCtlBlksnap::Cbtinfo => {
            let info = tracker.cbt_info();
            write_reply(
                buf,
                &BlksnapCbtinfo {
                    device_capacity: info.capacity,
                    block_size: info.block_size,
                    block_count: info.block_count,
                    generation_id: BlksnapUuid { b: info.generation },
                    changes_number: info.changes_number,
                    _pad: [0; 7],
                },
            )
        }
        BlkfilterCtlBlksnap::Cbtmap => {
            let req: BlksnapCbtmap = read_request(buf)?;
            let out = UserSlice::new(req.buffer as usize, req.length as usize);
            tracker.read_cbt(req.offset, req.length, out)?;
            Ok(0)
        }
        BlkfilterCtlBlksnap::Cbtdirty => {
            let req: BlksnapCbtdirty = read_request(buf)?;
            let len = (req.count as usize)
                .checked_mul(size_of::<BlksnapSectors>())
                .ok_or(EINVAL)?;
            let mut ranges = UserSlice::new(req.dirty_sectors as usize, len).reader();
            for _ in 0..req.count {
                let range: BlksnapSectors = ranges.read()?;
                tracker.mark_dirty(range.offset, range.count);
            }
            Ok(0)
        }
        // TODO[SNAPSHOT]: snapshot commands come with the snapshot core.
        BlkfilterCtlBlksnap::Snapshotadd | BlkfilterCtlBlksnap::Snapshotinfo => {
            Err(errno::eopnotsupp())
        }
    }
}
