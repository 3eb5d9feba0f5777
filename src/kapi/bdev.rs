// SPDX-License-Identifier: GPL-2.0
//! Block devices (`struct block_device`): borrowed from the block layer,
//! held open by number, and frozen around a snapshot take.

use core::ptr::NonNull;
use kernel::{bindings, error::from_err_ptr, prelude::*, types::Opaque};

use super::file::File;

// Untyped pointers: the lint against types without fields would reach
// `struct module` through `struct block_device`.
extern "C" {
    fn blksnap_bdev_open(dev: bindings::dev_t) -> *mut core::ffi::c_void;
    fn blksnap_bdev_limits(bdev: *mut core::ffi::c_void, limits: *mut BdevLimits);
    fn blksnap_bdev_unsupported(bdev: *mut core::ffi::c_void) -> bool;
    fn blksnap_freeze_queue_start(bdev: *mut core::ffi::c_void);
    fn blksnap_freeze_queue_wait(bdev: *mut core::ffi::c_void);
    fn blksnap_unfreeze_queue(bdev: *mut core::ffi::c_void);
}

/// (major, minor) of a `dev_t`.
fn split_dev(dev: bindings::dev_t) -> (u32, u32) {
    (dev >> bindings::MINORBITS, dev & ((1 << bindings::MINORBITS) - 1))
}

/// Block sizes of a device.
///
/// Must match `struct blksnap_bdev_limits` in `src/shim.h`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct BdevLimits {
    pub(crate) logical_block_size: u32,
    pub(crate) physical_block_size: u32,
    pub(crate) io_min: u32,
}

/// A block device, borrowed from the block layer.
///
/// # Invariants
///
/// The wrapped `struct block_device` is live for as long as the borrow.
#[repr(transparent)]
pub(crate) struct BlockDevice(Opaque<bindings::block_device>);

impl BlockDevice {
    /// Borrow the block device at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points to a `struct block_device` that stays live for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::block_device) -> &'a Self {
        // SAFETY: `BlockDevice` is a transparent wrapper, and the caller
        // guarantees that the device is live for `'a`.
        unsafe { &*ptr.cast() }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::block_device {
        self.0.get()
    }

    /// The device number as (major, minor).
    pub(crate) fn dev_id(&self) -> (u32, u32) {
        // SAFETY: by the type invariant the device is live; `bd_dev` is set
        // when it is created and never changes.
        split_dev(unsafe { (*self.0.get()).bd_dev })
    }

    /// Capacity in 512-byte sectors.
    pub(crate) fn nr_sectors(&self) -> u64 {
        // SAFETY: by the type invariant the device is live. The size may
        // change concurrently (resize); a plain read of the aligned u64 is
        // what bdev_nr_sectors() does as well.
        unsafe { (*self.0.get()).bd_nr_sectors }
    }

    pub(crate) fn limits(&self) -> BdevLimits {
        let mut limits = BdevLimits::default();
        // SAFETY: by the type invariant the device is live; `limits` has the
        // layout the C side writes.
        unsafe { blksnap_bdev_limits(self.as_raw().cast(), &mut limits) };
        limits
    }

    /// Whether its I/O carries what copy-on-write cannot preserve
    /// (integrity metadata, inline encryption).
    pub(crate) fn unsupported(&self) -> bool {
        // SAFETY: by the type invariant the device is live.
        unsafe { blksnap_bdev_unsupported(self.as_raw().cast()) }
    }

    /// Freeze the file system on the device, if any: it syncs, and no
    /// write of it starts until the guard is dropped.
    pub(crate) fn freeze_fs(&self) -> Result<FrozenFs<'_>> {
        // SAFETY: by the type invariant the device is live.
        kernel::error::to_result(unsafe { bindings::bdev_freeze(self.as_raw()) })?;
        Ok(FrozenFs(self))
    }

    /// Start freezing the device's queue: no I/O starts until the guard is
    /// dropped, and none is in flight once [`FrozenQueue::wait`] returns.
    /// Several queues frozen at once drain together. The queue is the whole
    /// disk's: freeze every file system of the disk before.
    pub(crate) fn start_queue_freeze(&self) -> FrozenQueue<'_> {
        // SAFETY: by the type invariant the device is live; undone in
        // `FrozenQueue::drop`.
        unsafe { blksnap_freeze_queue_start(self.as_raw().cast()) };
        FrozenQueue(self)
    }
}

/// A device whose file system is frozen; thawed on drop.
pub(crate) struct FrozenFs<'a>(&'a BlockDevice);

impl Drop for FrozenFs<'_> {
    fn drop(&mut self) {
        // SAFETY: the device is live (borrowed) and was frozen by
        // `BlockDevice::freeze_fs`, once.
        unsafe { bindings::bdev_thaw(self.0.as_raw()) };
    }
}

/// A device whose queue is frozen (or freezing); unfrozen on drop.
pub(crate) struct FrozenQueue<'a>(&'a BlockDevice);

impl FrozenQueue<'_> {
    /// Wait until the I/O in flight when the freeze started is done.
    pub(crate) fn wait(&self) {
        // SAFETY: the device is live (borrowed) and its freeze started.
        unsafe { blksnap_freeze_queue_wait(self.0.as_raw().cast()) };
    }
}

impl Drop for FrozenQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: the device is live (borrowed) and its queue was frozen by
        // `BlockDevice::freeze_queue`, once.
        unsafe { blksnap_unfreeze_queue(self.0.as_raw().cast()) };
    }
}

/// A block device held open by number, shared with other openers; the
/// device stays live (though it may be removed from the system) until drop.
pub(crate) struct BdevFile {
    _file: File,
    bdev: NonNull<bindings::block_device>,
}

impl BdevFile {
    pub(crate) fn open(dev_id: (u32, u32)) -> Result<Self> {
        let dev = (dev_id.0 << bindings::MINORBITS) | dev_id.1;
        // SAFETY: opening by number has no preconditions; the result is a
        // file reference or an error pointer.
        let raw = from_err_ptr(unsafe { blksnap_bdev_open(dev) })?.cast::<bindings::file>();
        let raw = NonNull::new(raw).ok_or(ENODEV)?;
        // SAFETY: `raw` is a file reference we now own.
        let file = unsafe { File::from_raw(raw) };
        // SAFETY: the file is an open block device.
        let bdev = unsafe { bindings::file_bdev(file.as_raw()) };
        Ok(Self {
            _file: file,
            bdev: NonNull::new(bdev).ok_or(ENODEV)?,
        })
    }

    pub(crate) fn bdev(&self) -> &BlockDevice {
        // SAFETY: the open file keeps the device live while `self` is.
        unsafe { BlockDevice::from_raw(self.bdev.as_ptr()) }
    }
}

// SAFETY: the device pointer is only used to borrow a `BlockDevice`, which
// may be used from any thread; `File` is `Send` and `Sync`.
unsafe impl Send for BdevFile {}
// SAFETY: as above.
unsafe impl Sync for BdevFile {}
