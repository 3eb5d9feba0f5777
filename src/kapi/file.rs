// SPDX-License-Identifier: GPL-2.0
//! Files the module opens itself (`struct file`): the difference storage.

use core::ptr::NonNull;
use kernel::{bindings, error::from_err_ptr, prelude::*, str::CStr};

use super::bdev::BlockDevice;

// Untyped pointers: the lint against types without fields would reach
// `struct module` through `struct file`.
extern "C" {
    fn blksnap_file_size(file: *mut core::ffi::c_void) -> bindings::loff_t;
    fn blksnap_file_is_bdev(file: *mut core::ffi::c_void) -> bool;
    fn blksnap_file_deny_other_writers(file: *mut core::ffi::c_void) -> core::ffi::c_int;
    fn blksnap_file_allow_other_writers(file: *mut core::ffi::c_void);
    fn blksnap_file_rw_bvec(
        file: *mut core::ffi::c_void,
        pos: *mut bindings::loff_t,
        bvec: *const core::ffi::c_void,
        nr: u32,
        skip: usize,
        len: usize,
        write: bool,
        direct: bool,
    ) -> isize;
}

/// Which way data moves between a file and memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Read,
    Write,
}

/// An open file, closed on drop.
///
/// # Invariants
///
/// `raw` is a file reference we hold until drop. If `others_denied`, it is
/// a regular file open for writing whose write access we deny to others.
pub(crate) struct File {
    raw: NonNull<bindings::file>,
    others_denied: bool,
}

/// How to open the difference storage.
#[derive(Clone, Copy)]
pub(crate) enum OpenMode {
    /// An existing regular file or block device, read-write and exclusive
    /// (a block device is claimed; a file is not opened a second time).
    Exclusive,
    /// A new unnamed file in a directory, gone when closed.
    TmpFileIn,
}

impl File {
    /// Open `path` in the kernel's name space.
    pub(crate) fn open(path: &CStr, mode: OpenMode) -> Result<Self> {
        let flags = match mode {
            OpenMode::Exclusive => bindings::O_RDWR | bindings::O_EXCL | bindings::O_LARGEFILE,
            OpenMode::TmpFileIn => bindings::O_RDWR | bindings::O_TMPFILE | bindings::O_LARGEFILE,
        };
        // SAFETY: `path` is NUL-terminated; filp_open returns a file
        // reference or an error pointer.
        let raw = from_err_ptr(unsafe { bindings::filp_open(path.as_char_ptr(), flags as i32, 0o600) })?;
        Ok(Self {
            raw: NonNull::new(raw).ok_or(EINVAL)?,
            others_denied: false,
        })
    }

    /// Keep everybody else from writing to or truncating this regular file
    /// (ETXTBSY) until it is closed; ETXTBSY if somebody has it open for
    /// writing now, EINVAL if it is not a regular file open for writing.
    pub(crate) fn deny_other_writers(&mut self) -> Result {
        if self.others_denied {
            return Ok(());
        }
        // SAFETY: by the type invariant the file is open.
        kernel::error::to_result(unsafe { blksnap_file_deny_other_writers(self.as_raw().cast()) })?;
        self.others_denied = true;
        Ok(())
    }

    /// Take over a file reference.
    ///
    /// # Safety
    ///
    /// `raw` is a file reference the caller gives up.
    pub(super) unsafe fn from_raw(raw: NonNull<bindings::file>) -> Self {
        Self {
            raw,
            others_denied: false,
        }
    }

    pub(super) fn as_raw(&self) -> *mut bindings::file {
        self.raw.as_ptr()
    }

    /// Whether writing the file can write to `bdev` (see the kernel's
    /// file_reaches_bdev()).
    pub(crate) fn reaches(&self, bdev: &BlockDevice) -> bool {
        // SAFETY: by the type invariant the file is open; `bdev` is live.
        unsafe { bindings::file_reaches_bdev(self.as_raw(), bdev.as_raw()) }
    }

    /// Whether it is a block device.
    pub(crate) fn is_bdev(&self) -> bool {
        // SAFETY: by the type invariant the file is open.
        unsafe { blksnap_file_is_bdev(self.as_raw().cast()) }
    }

    /// The number of the block device the file is, if it is one.
    pub(crate) fn bdev_id(&self) -> Option<(u32, u32)> {
        if !self.is_bdev() {
            return None;
        }
        // SAFETY: by the type invariant the file is open, and it is a block
        // device: `file_bdev` gives its live device.
        let bdev = unsafe { BlockDevice::from_raw(bindings::file_bdev(self.as_raw())) };
        Some(bdev.dev_id())
    }

    /// Size in bytes (EINVAL if it is neither a regular file nor a block
    /// device).
    pub(crate) fn size(&self) -> Result<u64> {
        // SAFETY: by the type invariant the file is open.
        let size = unsafe { blksnap_file_size(self.as_raw().cast()) };
        u64::try_from(size).map_err(|_| Error::from_errno(size as i32))
    }

    /// Move `len` bytes between the file at byte `pos` and the memory
    /// `vecs` describe, from byte `skip` of it; EIO past the end of the
    /// file. Direct I/O where the file and the alignment allow it (no copy
    /// through the page cache), buffered otherwise.
    ///
    /// # Safety
    ///
    /// The vectors' pages are live and hold `skip + len` bytes; for a read
    /// nothing else touches them meanwhile, for a write nothing changes them.
    pub(super) unsafe fn rw_vectors(
        &self,
        vecs: &[bindings::bio_vec],
        skip: usize,
        len: usize,
        pos: u64,
        dir: Direction,
    ) -> Result {
        let mut pos = i64::try_from(pos).map_err(|_| EINVAL)?;
        let mut done = 0;
        let mut direct = true;
        while done < len {
            // SAFETY: by the type invariant the file is open (for writing,
            // if it is a write); the memory is as the caller promises.
            let r = unsafe {
                blksnap_file_rw_bvec(
                    self.as_raw().cast(),
                    &mut pos,
                    vecs.as_ptr().cast(),
                    vecs.len() as u32,
                    skip + done,
                    len - done,
                    dir == Direction::Write,
                    direct,
                )
            };
            if direct && r == -(bindings::EINVAL as isize) {
                // Not aligned for direct I/O: through the page cache.
                direct = false;
                continue;
            }
            done += io_result(r)?;
        }
        Ok(())
    }

    /// Allocate `len` bytes at `offset`, extending the file.
    pub(crate) fn allocate(&self, offset: u64, len: u64) -> Result {
        let offset = i64::try_from(offset).map_err(|_| EFBIG)?;
        let len = i64::try_from(len).map_err(|_| EFBIG)?;
        // SAFETY: by the type invariant the file is open for writing.
        kernel::error::to_result(unsafe { bindings::vfs_fallocate(self.as_raw(), 0, offset, len) })
    }
}

/// Bytes moved by one read or write: an error, or EIO if none (the end of
/// the storage: it is broken).
fn io_result(r: isize) -> Result<usize> {
    match r {
        r if r < 0 => Err(Error::from_errno(r as i32)),
        0 => Err(EIO),
        r => Ok(r as usize),
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if self.others_denied {
            // SAFETY: by the type invariant we denied others write access
            // to the file, which is still open.
            unsafe { blksnap_file_allow_other_writers(self.as_raw().cast()) };
        }
        // SAFETY: by the type invariant we hold this reference; it is given
        // back once.
        unsafe { bindings::fput(self.as_raw()) };
    }
}

// SAFETY: a file reference may be used and put from any thread.
unsafe impl Send for File {}
// SAFETY: the operations used are safe to call concurrently.
unsafe impl Sync for File {}
