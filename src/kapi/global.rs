// SPDX-License-Identifier: GPL-2.0
//! Module-wide objects that C callbacks reach without a context pointer.

use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// A slot for one module-wide object, filled at module init and emptied at
/// module exit.
pub(crate) struct Global<T>(AtomicPtr<T>);

impl<T: Sync> Global<T> {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Publish `value` until the returned guard is dropped.
    pub(crate) fn publish(&'static self, value: Pin<KBox<T>>) -> Published<T> {
        // SAFETY: the object is never moved out of the box; `Published`
        // drops it in place.
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(value) });
        self.0.store(raw, Ordering::Release);
        Published(self)
    }

    /// The object, if it is published.
    pub(crate) fn get(&'static self) -> Option<&'static T> {
        let ptr = self.0.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from `publish` and is freed only by
        // the `Published` guard, which the module drops at exit. By then no
        // caller can run: ioctls and attached filters hold a reference to the
        // module, and the module drains its work before the guard goes.
        unsafe { ptr.as_ref() }
    }
}

/// Keeps a [`Global`] filled; empties it and drops the object on drop.
pub(crate) struct Published<T: 'static>(&'static Global<T>);

impl<T: 'static> Drop for Published<T> {
    fn drop(&mut self) {
        let ptr = self.0 .0.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: `ptr` came from `KBox::into_raw` of a pinned box in
        // `publish`, and the slot no longer hands it out.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(ptr)) });
    }
}
