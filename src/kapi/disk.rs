// SPDX-License-Identifier: GPL-2.0
//! Bio-based disks of this module (the snapshot images): a gendisk whose bios
//! go to a Rust handler.

use core::ptr::NonNull;
use kernel::{bindings, error::from_err_ptr, prelude::*, str::CStr, sync::Arc};

use super::{bdev::BdevLimits, bio::DiskBio};

extern "C" {
    fn blksnap_disk_alloc(
        handler: *mut core::ffi::c_void,
        name: *const core::ffi::c_char,
        capacity: u64,
        limits: *const BdevLimits,
    ) -> *mut core::ffi::c_void;
    fn blksnap_disk_add(disk: *mut core::ffi::c_void) -> core::ffi::c_int;
}

/// Receives the bios of a [`Disk`]. Called in the submitter's context,
/// possibly with bios of other devices pending on the task: it must not wait
/// for I/O.
pub(crate) trait DiskHandler: Send + Sync + Sized {
    fn submit_bio(this: &Arc<Self>, bio: DiskBio);
}

/// What the gendisk's `private_data` points to; its head is
/// `struct blksnap_disk_handler` of `src/shim.h`.
#[repr(C)]
struct HandlerBox<T> {
    submit_bio: unsafe extern "C" fn(*mut HandlerBox<T>, *mut bindings::bio),
    handler: Arc<T>,
}

unsafe extern "C" fn submit_bio_callback<T: DiskHandler>(
    this: *mut HandlerBox<T>,
    bio: *mut bindings::bio,
) {
    // SAFETY: `this` is the handler box of a live `Disk<T>`: `Disk::drop`
    // deletes the disk, after which no bio is submitted to it, before the box
    // is freed.
    let this = unsafe { &*this };
    // SAFETY: the block layer hands the bio to the driver.
    if let Some(bio) = unsafe { DiskBio::new(bio) } {
        T::submit_bio(&this.handler, bio);
    }
}

/// A disk that is visible to the system until drop.
///
/// # Invariants
///
/// `raw` is an added gendisk whose `private_data` is `handler`'s address.
pub(crate) struct Disk<T: DiskHandler> {
    raw: NonNull<bindings::gendisk>,
    // Boxed so that its address, handed to C, is stable; read from C only.
    _handler: KBox<HandlerBox<T>>,
}

impl<T: DiskHandler> Disk<T> {
    /// Create and add a disk of `capacity` sectors without partitions.
    pub(crate) fn new(
        name: &CStr,
        capacity: u64,
        limits: &BdevLimits,
        handler: Arc<T>,
    ) -> Result<Self> {
        let mut handler = KBox::new(
            HandlerBox {
                submit_bio: submit_bio_callback::<T>,
                handler,
            },
            GFP_KERNEL,
        )?;
        let private = (&mut *handler as *mut HandlerBox<T>).cast();
        // SAFETY: `name` is NUL-terminated, `limits` valid for the call, and
        // `private` outlives the disk (see the type invariant); the result is
        // a gendisk reference or an error pointer.
        let raw = from_err_ptr(unsafe {
            blksnap_disk_alloc(private, name.as_char_ptr().cast(), capacity, limits)
        })?;
        let raw = NonNull::new(raw.cast::<bindings::gendisk>()).ok_or(ENOMEM)?;
        // SAFETY: `raw` is a fresh disk, not yet added.
        if let Err(e) = kernel::error::to_result(unsafe { blksnap_disk_add(raw.as_ptr().cast()) }) {
            // SAFETY: never added: only the reference is dropped.
            unsafe { bindings::put_disk(raw.as_ptr()) };
            return Err(e);
        }
        Ok(Self {
            raw,
            _handler: handler,
        })
    }
}

impl<T: DiskHandler> Drop for Disk<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the disk was added. del_gendisk()
        // stops new bios (openers get errors) and returns once the calls into
        // `submit_bio` are done; the bios the handler queued are its own.
        unsafe {
            bindings::del_gendisk(self.raw.as_ptr());
            bindings::put_disk(self.raw.as_ptr());
        }
    }
}

// SAFETY: a gendisk may be deleted from any thread; the handler is `Send +
// Sync`.
unsafe impl<T: DiskHandler> Send for Disk<T> {}
// SAFETY: `&Disk` gives access to nothing.
unsafe impl<T: DiskHandler> Sync for Disk<T> {}
