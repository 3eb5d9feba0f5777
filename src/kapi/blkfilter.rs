// SPDX-License-Identifier: GPL-2.0
//! Block device filters (`include/linux/blk-filter.h`, added by the kernel
//! patch in `kernel/patches`).
//!
//! A type implementing [`Filter`] is created for each device the filter is
//! attached to. It lives in an [`Attached`] box whose embedded
//! `struct blkfilter` is what the block layer holds; the box is freed when the
//! block layer drops the last reference.

use core::{marker::PhantomData, ops::Deref, ptr::NonNull};
use kernel::{
    bindings,
    error::{to_result, Result},
    prelude::*,
    str::CStr,
    types::Opaque,
    uaccess::UserSlice,
    ThisModule,
};

use super::{
    bdev::BlockDevice,
    bio::{FilteredBio, OwnedBio},
};

extern "C" {
    // `*mut blkfilter`, untyped: the lint against types without fields would
    // reach `struct module` through the operations.
    fn blksnap_current_filter() -> *mut core::ffi::c_void;
    fn blksnap_filter_get(flt: *mut core::ffi::c_void);
    fn blksnap_filter_put(flt: *mut core::ffi::c_void);
    fn blksnap_filter_attached(bdev: *mut core::ffi::c_void, flt: *mut core::ffi::c_void) -> bool;
}

/// What a block device filter does with the devices it is attached to.
pub(crate) trait Filter: Send + Sync + Sized {
    /// Create the filter's state for `bdev`; `opt` holds user options.
    fn attach(bdev: &BlockDevice, opt: UserSlice) -> Result<Self>;

    /// Run command `cmd` with the user buffer `buf`; returns the number of
    /// bytes produced.
    fn ctl(this: &FilterRef<Self>, cmd: u32, buf: UserSlice) -> Result<u32>;

    /// See `bio` before the block layer does: give it back to let it go on,
    /// or keep it (and submit it later, or end it).
    fn submit_bio(&self, bio: FilteredBio) -> Option<FilteredBio>;
}

/// A counted reference to an attached filter. The filter may have been
/// detached since; its state lives until the last reference goes.
///
/// # Invariants
///
/// `attached` is a live `Attached<F>` on which this holds a reference.
pub(crate) struct FilterRef<F: Filter> {
    attached: NonNull<Attached<F>>,
}

impl<F: Filter> FilterRef<F> {
    /// Take a new reference to `attached`.
    fn new(attached: &Attached<F>) -> Self {
        // SAFETY: the filter is live (borrowed), so its count is not zero.
        unsafe { blksnap_filter_get(attached.raw.get().cast()) };
        Self {
            attached: NonNull::from(attached),
        }
    }

    fn raw(&self) -> *mut core::ffi::c_void {
        // SAFETY: by the type invariant the filter is live.
        unsafe { self.attached.as_ref() }.raw.get().cast()
    }

    /// Whether this filter is still the one attached to `bdev`.
    pub(crate) fn is_attached_to(&self, bdev: &BlockDevice) -> bool {
        self.id().is_attached_to(bdev)
    }

    /// The attachment's identity, to check later without a reference.
    pub(crate) fn id(&self) -> FilterId {
        FilterId(self.raw() as usize)
    }

    /// Whether `self` and `other` are the same attachment.
    pub(crate) fn same(&self, other: &Self) -> bool {
        self.attached == other.attached
    }
}

impl<F: Filter> Deref for FilterRef<F> {
    type Target = F;

    fn deref(&self) -> &F {
        // SAFETY: by the type invariant the filter is live while we hold the
        // reference.
        &unsafe { self.attached.as_ref() }.filter
    }
}

impl<F: Filter> Clone for FilterRef<F> {
    fn clone(&self) -> Self {
        // SAFETY: by the type invariant the filter is live.
        Self::new(unsafe { self.attached.as_ref() })
    }
}

impl<F: Filter> Drop for FilterRef<F> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold a reference; given back once.
        // The last one frees the filter through `detach_callback`.
        unsafe { blksnap_filter_put(self.raw()) };
    }
}

/// Which attachment a filter is: an address that is only ever compared,
/// never followed. While a [`FilterRef`] to it lives the address cannot be
/// reused, so a holder of both can tell whether the filter is still attached
/// without taking a reference (which it could not give back from any
/// context).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FilterId(usize);

impl FilterId {
    /// Whether this is the filter attached to `bdev` now.
    pub(crate) fn is_attached_to(self, bdev: &BlockDevice) -> bool {
        // SAFETY: `bdev` is live; the C side only compares the pointers.
        unsafe { blksnap_filter_attached(bdev.as_raw().cast(), self.0 as *mut core::ffi::c_void) }
    }
}

// SAFETY: the filter is `Send + Sync` and its count is atomic.
unsafe impl<F: Filter> Send for FilterRef<F> {}
// SAFETY: as above.
unsafe impl<F: Filter> Sync for FilterRef<F> {}

/// A filter attached to a device, with the `struct blkfilter` the block layer
/// references it by.
///
/// # Invariants
///
/// `raw.ops` points to the operations of the [`Registration<F>`] that
/// created it.
#[repr(C)]
struct Attached<F> {
    raw: Opaque<bindings::blkfilter>,
    filter: F,
}

impl<F: Filter> Attached<F> {
    /// The attached filter that `flt` is embedded in.
    ///
    /// # Safety
    ///
    /// `flt` was returned by [`attach_callback::<F>`] and the caller holds a
    /// reference to it for `'a`.
    unsafe fn from_raw<'a>(flt: *mut bindings::blkfilter) -> &'a Self {
        // SAFETY: `raw` is the first field of a `repr(C)` struct and
        // `Opaque<T>` has the layout of `T`, so the pointers are equal; the
        // caller's reference keeps the box alive for `'a`.
        unsafe { &*flt.cast::<Self>() }
    }
}

/// Turn a Rust result into what the block layer expects from ->attach().
fn attach<F: Filter>(bdev: &BlockDevice, opt: UserSlice) -> Result<*mut bindings::blkfilter> {
    let attached = KBox::new(
        Attached {
            raw: Opaque::uninit(),
            filter: F::attach(bdev, opt)?,
        },
        GFP_KERNEL,
    )?;
    // `raw` is the first field of the `repr(C)` box: the pointers are equal.
    // The block layer initialises it and owns the box from here on; it is
    // given back in `detach_callback`.
    Ok(KBox::into_raw(attached).cast())
}

unsafe extern "C" fn attach_callback<F: Filter>(
    bdev: *mut bindings::block_device,
    opt: *mut u8,
    optlen: u32,
) -> *mut bindings::blkfilter {
    // SAFETY: the block layer passes a device that stays live for the call.
    let bdev = unsafe { BlockDevice::from_raw(bdev) };
    attach::<F>(bdev, UserSlice::new(opt as usize, optlen as usize)).unwrap_or_else(Error::to_ptr)
}

unsafe extern "C" fn detach_callback<F: Filter>(flt: *mut bindings::blkfilter) {
    // SAFETY: `flt` came from `attach::<F>`, which leaked a `KBox<Attached<F>>`
    // whose first field it is; the last reference is gone, so the box is
    // ours to free.
    drop(unsafe { KBox::from_raw(flt.cast::<Attached<F>>()) });
}

unsafe extern "C" fn ctl_callback<F: Filter>(
    flt: *mut bindings::blkfilter,
    cmd: u32,
    buf: *mut u8,
    plen: *mut u32,
) -> core::ffi::c_int {
    // SAFETY: the block layer holds a reference to `flt` across the call.
    let attached = unsafe { Attached::<F>::from_raw(flt) };
    // SAFETY: `plen` points to the caller's length for the call's duration.
    let len = unsafe { &mut *plen };
    let this = FilterRef::new(attached);
    match F::ctl(&this, cmd, UserSlice::new(buf as usize, *len as usize)) {
        Ok(produced) => {
            *len = produced;
            0
        }
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn submit_bio_callback<F: Filter>(bio: *mut bindings::bio) -> bool {
    // SAFETY: the block layer calls this with a live bio it has not sent on.
    // It also sets current->blk_filter to the device's filter, which stays
    // attached under its SRCU read lock for the whole call.
    let (bio, flt) = unsafe { (FilteredBio::new(bio), blksnap_current_filter().cast()) };
    let Some(bio) = bio else { return false };
    // SAFETY: see above: `flt` is an attached filter of this registration.
    let attached = unsafe { Attached::<F>::from_raw(flt) };
    match attached.filter.submit_bio(bio) {
        // Passed on: the block layer carries on with it.
        Some(bio) => {
            let _ = bio.into_raw();
            false
        }
        None => true,
    }
}

/// A registered filter type: user space can attach it by name while this
/// lives.
///
/// # Invariants
///
/// `ops` is registered with the block layer until drop.
pub(crate) struct Registration<F: Filter> {
    ops: Pin<KBox<Opaque<bindings::blkfilter_operations>>>,
    _filter: PhantomData<F>,
}

impl<F: Filter> Registration<F> {
    /// Register filter `F` under `name`.
    pub(crate) fn new(name: &'static CStr, module: &'static ThisModule) -> Result<Self> {
        let ops = KBox::pin(
            Opaque::new(bindings::blkfilter_operations {
                // SAFETY: an all-zero list_head is valid to hand to list_add().
                link: unsafe { core::mem::zeroed() },
                owner: module.as_ptr(),
                name: name.as_char_ptr(),
                attach: Some(attach_callback::<F>),
                detach: Some(detach_callback::<F>),
                ctl: Some(ctl_callback::<F>),
                submit_bio: Some(submit_bio_callback::<F>),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `ops` is pinned and valid; it is unregistered in drop,
        // before it is freed.
        to_result(unsafe { bindings::blkfilter_register(ops.get()) })?;
        Ok(Self {
            ops,
            _filter: PhantomData,
        })
    }
}

impl<F: Filter> Drop for Registration<F> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `ops` is registered. No filter of it
        // is attached: each would hold a reference to this module.
        unsafe { bindings::blkfilter_unregister(self.ops.get()) };
    }
}

// SAFETY: the operations table is only read by the block layer after
// registration, and the list link is changed under its own lock.
unsafe impl<F: Filter> Send for Registration<F> {}
// SAFETY: `&Registration` gives no access to the table.
unsafe impl<F: Filter> Sync for Registration<F> {}
