// SPDX-License-Identifier: GPL-2.0
//! The ioctls of the blkfilter and blksnap interfaces, as safe functions.

use blksnap_uapi::*;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Issue `request` on `file` with `arg` as its in/out argument.
fn ioctl<T>(file: &File, request: u32, arg: &mut T) -> io::Result<()> {
    // SAFETY: every request passed here takes a pointer to a `T`-sized
    // `repr(C)` struct (the uapi module checks sizes against the C headers),
    // and `arg` is a valid, exclusively borrowed `T` for the call.
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
