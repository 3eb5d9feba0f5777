// SPDX-License-Identifier: GPL-2.0
//! The ioctls of the blkfilter and blksnap interfaces, and FS_IOC_FIEMAP,
//! as safe functions.

use blksnap_uapi::*;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Issue `request` on `file` with `arg` as its in/out argument.
fn ioctl<T>(file: &File, request: u32, arg: &mut T) -> io::Result<()> {
    // SAFETY: every request passed here takes a pointer to a `T`-sized
    // `repr(C)` struct (the uapi module checks sizes against the C headers;
    // FS_IOC_FIEMAP's `T` is a struct fiemap and the fm_extent_count
    // extents after it), and `arg` is a valid, exclusively borrowed `T` for
    // the call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), request as libc::c_ulong, arg as *mut T) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A filter name, NUL-padded.
fn filter_name(name: &str) -> [u8; BLKFILTER_NAME_LENGTH] {
    let mut out = [0u8; BLKFILTER_NAME_LENGTH];
    let len = name.len().min(BLKFILTER_NAME_LENGTH);
    out[..len].copy_from_slice(&name.as_bytes()[..len]);
    out
}

/// Attach the blksnap filter to the block device open as `dev`.
pub fn attach(dev: &File) -> io::Result<()> {
    let mut arg = BlkfilterAttach {
        name: filter_name(BLKSNAP_FILTER_NAME),
        ..Default::default()
    };
    ioctl(dev, BLKFILTER_ATTACH, &mut arg)
}

/// Detach the blksnap filter from the block device open as `dev`.
pub fn detach(dev: &File) -> io::Result<()> {
    let mut arg = BlkfilterDetach {
        name: filter_name(BLKSNAP_FILTER_NAME),
    };
    ioctl(dev, BLKFILTER_DETACH, &mut arg)
}

/// Attach the blksnap filter to `dev` unless it is attached already.
pub fn ensure_attached(dev: &File) -> io::Result<()> {
    match attach(dev) {
        Err(e) if e.raw_os_error() == Some(libc::EALREADY) => Ok(()),
        result => result,
    }
}

/// Run blksnap filter command `cmd` on `dev` with `arg` as its buffer.
fn ctl<T>(dev: &File, cmd: BlkfilterCtlBlksnap, arg: &mut T) -> io::Result<()> {
    let mut ctl = BlkfilterCtl {
        name: filter_name(BLKSNAP_FILTER_NAME),
        cmd: cmd as u32,
        optlen: std::mem::size_of::<T>() as u32,
        opt: arg as *mut T as u64,
    };
    ioctl(dev, BLKFILTER_CTL, &mut ctl)
}

/// The change tracking state of `dev`.
pub fn cbtinfo(dev: &File) -> io::Result<BlksnapCbtinfo> {
    let mut info = BlksnapCbtinfo::default();
    ctl(dev, BlkfilterCtlBlksnap::Cbtinfo, &mut info)?;
    Ok(info)
}

/// Read the change tracking table of `dev` into `table`, from `offset`.
pub fn cbtmap(dev: &File, offset: u32, table: &mut [u8]) -> io::Result<()> {
    let mut arg = BlksnapCbtmap {
        offset,
        length: table.len().try_into().map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        buffer: table.as_mut_ptr() as u64,
    };
    ctl(dev, BlkfilterCtlBlksnap::Cbtmap, &mut arg)
}

/// Mark `ranges` of `dev` as changed.
pub fn cbtdirty(dev: &File, ranges: &[BlksnapSectors]) -> io::Result<()> {
    let mut arg = BlksnapCbtdirty {
        count: ranges.len().try_into().map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        _pad: 0,
        dirty_sectors: ranges.as_ptr() as u64,
    };
    ctl(dev, BlkfilterCtlBlksnap::Cbtdirty, &mut arg)
}

/// The version of the module behind the control device `ctl`.
pub fn version(ctl: &File) -> io::Result<BlksnapVersion> {
    let mut v = BlksnapVersion::default();
    ioctl(ctl, IOCTL_BLKSNAP_VERSION, &mut v)?;
    Ok(v)
}

/// Add `dev` to snapshot `id`.
pub fn snapshot_add(dev: &File, id: &BlksnapUuid) -> io::Result<()> {
    let mut arg = BlksnapSnapshotadd { id: *id };
    ctl(dev, BlkfilterCtlBlksnap::Snapshotadd, &mut arg)
}

/// The snapshot state of `dev`: its error and image name.
pub fn snapshotinfo(dev: &File) -> io::Result<BlksnapSnapshotinfo> {
    let mut info = BlksnapSnapshotinfo::default();
    ctl(dev, BlkfilterCtlBlksnap::Snapshotinfo, &mut info)?;
    Ok(info)
}

/// Create a snapshot whose difference storage is `storage`, allowed to grow
/// to `limit_sect` sectors; returns its id.
pub fn snapshot_create(control: &File, storage: &CStr, limit_sect: u64) -> io::Result<BlksnapUuid> {
    let mut arg = BlksnapSnapshotCreate {
        diff_storage_limit_sect: limit_sect,
        diff_storage_filename: storage.as_ptr() as u64,
        id: BlksnapUuid::default(),
    };
    ioctl(control, IOCTL_BLKSNAP_SNAPSHOT_CREATE, &mut arg)?;
    Ok(arg.id)
}

/// Destroy snapshot `id`.
pub fn snapshot_destroy(control: &File, id: &BlksnapUuid) -> io::Result<()> {
    ioctl(control, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, &mut { *id })
}

/// Take snapshot `id`.
pub fn snapshot_take(control: &File, id: &BlksnapUuid) -> io::Result<()> {
    ioctl(control, IOCTL_BLKSNAP_SNAPSHOT_TAKE, &mut { *id })
}

/// The ids of all snapshots.
pub fn snapshot_collect(control: &File) -> io::Result<Vec<BlksnapUuid>> {
    let mut ids = Vec::new();
    loop {
        let mut arg = BlksnapSnapshotCollect {
            // Never truncates: the length only ever comes from a u32 count.
            count: ids.len() as u32,
            _pad: 0,
            // The first call asks for the count only, with no buffer.
            ids: if ids.is_empty() {
                0
            } else {
                ids.as_mut_ptr() as u64
            },
        };
        match ioctl(control, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &mut arg) {
            // Upstream answers a call without a buffer with just the count.
            Ok(()) if ids.is_empty() && arg.count > 0 => {
                ids.resize(arg.count as usize, BlksnapUuid::default());
            }
            Ok(()) => {
                ids.truncate(arg.count as usize);
                return Ok(ids);
            }
            // Too small a buffer (none at first, or snapshots were created
            // since): grow it; a count that does not grow would loop forever.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) && arg.count as usize > ids.len() => {
                ids.resize(arg.count as usize, BlksnapUuid::default());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Wait up to `timeout_ms` for the next event of snapshot `id`.
pub fn snapshot_wait_event(
    control: &File,
    id: &BlksnapUuid,
    timeout_ms: u32,
) -> io::Result<Box<BlksnapSnapshotEvent>> {
    // Boxed: the event is a page, too big to pass around on the stack.
    let mut event = Box::new(BlksnapSnapshotEvent {
        id: *id,
        timeout_ms,
        ..Default::default()
    });
    ioctl(control, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, &mut *event)?;
    Ok(event)
}

/// A struct that the data of an event may hold.
///
/// # Safety
/// Implementors are `repr(C)` structs of integers only, valid for any bytes.
pub unsafe trait EventPayload: Copy {}
// SAFETY: integers only.
unsafe impl EventPayload for BlksnapEventCorrupted {}
// SAFETY: integers only.
unsafe impl EventPayload for BlksnapEventNoSpace {}

/// The data of `event` read as a `T`; which `T` depends on `event.code`.
pub fn event_payload<T: EventPayload>(event: &BlksnapSnapshotEvent) -> T {
    const { assert!(std::mem::size_of::<T>() <= EVENT_SIZE - 32) };
    // SAFETY: `data` holds at least `size_of::<T>()` initialised bytes, and
    // any bytes are a valid `T`; the read need not be aligned.
    unsafe { std::ptr::read_unaligned(event.data.as_ptr().cast::<T>()) }
}

/// How many extents one FS_IOC_FIEMAP call asks for.
const FIEMAP_BATCH: usize = 256;
/// FS_IOC_FIEMAP, _IOWR('f', 11, struct fiemap), from linux/fs.h.
const FS_IOC_FIEMAP: u32 = 0xc020_660b;
/// fm_flags: write the file's dirty data out first, so that every extent
/// has its final location.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// fe_flags, from linux/fiemap.h.
pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
pub const FIEMAP_EXTENT_UNKNOWN: u32 = 0x2;
pub const FIEMAP_EXTENT_DELALLOC: u32 = 0x4;

/// struct fiemap_extent: one extent of a file, in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FiemapExtent {
    pub fe_logical: u64,
    pub fe_physical: u64,
    pub fe_length: u64,
    pub fe_reserved64: [u64; 2],
    pub fe_flags: u32,
    pub fe_reserved: [u32; 3],
}

/// struct fiemap, with room for FIEMAP_BATCH extents after it.
#[repr(C)]
struct Fiemap {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
    fm_extents: [FiemapExtent; FIEMAP_BATCH],
}

const _: () = assert!(std::mem::size_of::<FiemapExtent>() == 56);
const _: () = assert!(std::mem::offset_of!(Fiemap, fm_extents) == 32);

/// The extents of `file` from byte `start` on, up to FIEMAP_BATCH of them,
/// after writing its dirty data out; none past its last.
pub fn fiemap(file: &File, start: u64) -> io::Result<Vec<FiemapExtent>> {
    // Boxed: FIEMAP_BATCH extents are too big for the stack.
    let mut map = Box::new(Fiemap {
        fm_start: start,
        fm_length: u64::MAX - start,
        fm_flags: FIEMAP_FLAG_SYNC,
        fm_mapped_extents: 0,
        fm_extent_count: FIEMAP_BATCH as u32,
        fm_reserved: 0,
        fm_extents: [FiemapExtent::default(); FIEMAP_BATCH],
    });
    ioctl(file, FS_IOC_FIEMAP, &mut *map)?;
    let mapped = (map.fm_mapped_extents as usize).min(FIEMAP_BATCH);
    Ok(map.fm_extents[..mapped].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiemap_request() {
        // _IOWR: direction 3, the size of struct fiemap without its extents.
        assert_eq!(FS_IOC_FIEMAP, 3 << 30 | 32 << 16 | (b'f' as u32) << 8 | 11);
    }
}
