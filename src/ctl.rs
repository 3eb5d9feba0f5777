// SPDX-License-Identifier: GPL-2.0
//! The control surface: ioctls decoded into typed requests, replies encoded
//! back, errors turned into errno values.

use core::mem::size_of;
use kernel::{
    bindings,
    prelude::*,
    types::{AsBytes, FromBytes},
    uaccess::UserSlice,
};

use crate::{
    event_queue::EventKind,
    kapi::{blkfilter::FilterRef, errno, task::cond_resched, uapi::*, user::UserCString},
    snapshot::MemberInfo,
    snapshots,
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
        IOCTL_BLKSNAP_SNAPSHOT_CREATE => {
            let buf = UserSlice::new(arg, size_of::<BlksnapSnapshotCreate>());
            let mut req: BlksnapSnapshotCreate = read_request(buf)?;
            let path = UserCString::copy(req.diff_storage_filename, bindings::PATH_MAX as usize)?;
            req.id.b = snapshots()?.create(path.as_cstr()?, req.diff_storage_limit_sect)?;
            let written = UserSlice::new(arg, size_of::<BlksnapSnapshotCreate>())
                .writer()
                .write(&req);
            if written.is_err() {
                // Nobody could name it: don't leave it behind.
                let _ = snapshots()?.destroy(&req.id.b);
            }
            written
        }
        IOCTL_BLKSNAP_SNAPSHOT_DESTROY => snapshots()?.destroy(&read_id(arg)?),
        IOCTL_BLKSNAP_SNAPSHOT_TAKE => snapshots()?.take(&read_id(arg)?),
        IOCTL_BLKSNAP_SNAPSHOT_COLLECT => collect(arg),
        IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT => wait_event(arg),
        _ => Err(ENOTTY),
    }
}

fn read_id(arg: usize) -> Result<[u8; 16]> {
    let id: BlksnapUuid = read_request(UserSlice::new(arg, size_of::<BlksnapUuid>()))?;
    Ok(id.b)
}

/// SNAPSHOT_COLLECT: with no buffer (`ids` 0), the number of snapshots in
/// `count`; else the ids, oldest first, if `count` is enough for them, or
/// ENODATA with `count` set to the number needed.
fn collect(arg: usize) -> Result {
    let size = size_of::<BlksnapSnapshotCollect>();
    let mut req: BlksnapSnapshotCollect = read_request(UserSlice::new(arg, size))?;
    let ids = snapshots()?.ids()?;
    let fits = req.ids == 0 || ids.len() <= req.count as usize;
    if fits && req.ids != 0 {
        let len = ids.len() * size_of::<BlksnapUuid>();
        let mut out = UserSlice::new(req.ids as usize, len).writer();
        for id in ids.iter() {
            out.write(&BlksnapUuid { b: *id })?;
        }
    }
    req.count = u32::try_from(ids.len()).map_err(|_| EINVAL)?;
    UserSlice::new(arg, size).writer().write(&req)?;
    if fits {
        Ok(())
    } else {
        Err(errno::enodata())
    }
}

/// Zeroes for the unused part of an event's data.
static ZEROS: [u8; EVENT_SIZE] = [0; EVENT_SIZE];

/// SNAPSHOT_WAIT_EVENT: wait for the next event of a snapshot and fill in
/// the rest of the 4 KiB request with it.
fn wait_event(arg: usize) -> Result {
    let mut reader = UserSlice::new(arg, EVENT_SIZE).reader();
    let id: BlksnapUuid = reader.read()?;
    let timeout_ms: u32 = reader.read()?;
    let event = snapshots()?.find(&id.b)?.wait_event(timeout_ms)?;
    // The reply starts at `code`, after the id and the timeout.
    let header = size_of::<BlksnapUuid>() + size_of::<u32>();
    let mut out = UserSlice::new(arg + header, EVENT_SIZE - header).writer();
    let data_len = match event.kind {
        EventKind::Corrupted { .. } => size_of::<BlksnapEventCorrupted>(),
        EventKind::NoSpace { .. } => size_of::<BlksnapEventNoSpace>(),
    };
    match event.kind {
        EventKind::Corrupted { dev_id, errno } => {
            out.write(&BLKSNAP_EVENT_CODE_CORRUPTED)?;
            out.write(&event.time_ns)?;
            out.write(&BlksnapEventCorrupted {
                dev_id_mj: dev_id.0,
                dev_id_mn: dev_id.1,
                err_code: errno,
            })?;
        }
        EventKind::NoSpace { requested } => {
            out.write(&BLKSNAP_EVENT_CODE_NO_SPACE)?;
            out.write(&event.time_ns)?;
            out.write(&BlksnapEventNoSpace {
                requested_nr_sect: requested,
            })?;
        }
    }
    out.write_slice(&ZEROS[..EVENT_SIZE - 32 - data_len])
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
pub(crate) fn tracker_ctl(tracker: &FilterRef<Tracker>, cmd: u32, buf: UserSlice) -> Result<u32> {
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
                tracker.mark_dirty_checked(range.offset, range.count)?;
                // Up to 2^32 ranges from user space.
                cond_resched();
            }
            Ok(0)
        }
        BlkfilterCtlBlksnap::Snapshotadd => {
            let req: BlksnapSnapshotadd = read_request(buf)?;
            snapshots()?.add(&req.id.b, tracker.clone())?;
            Ok(0)
        }
        BlkfilterCtlBlksnap::Snapshotinfo => {
            // A device in no snapshot (not added, or destroyed) has no image.
            let info = match tracker.snapshot_id().map(|id| snapshots()?.find(&id)) {
                Some(Ok(snapshot)) => snapshot.member_info(tracker),
                Some(Err(e)) if e != ESRCH => return Err(e),
                _ => MemberInfo::NONE,
            };
            write_reply(
                buf,
                &BlksnapSnapshotinfo {
                    error_code: info.error,
                    image: info.image,
                },
            )
        }
    }
}
