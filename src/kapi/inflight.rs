// SPDX-License-Identifier: GPL-2.0
//! A count of I/O in flight that a task can wait to drain. The I/O leaves
//! from its completion (any context); waiting sleeps.

use core::{marker::PhantomPinned, ptr::NonNull};
use kernel::{bindings, prelude::*, types::Opaque};

extern "C" {
    fn blksnap_inflight_enter(inflight: *mut bindings::atomic_t, draining: *mut bindings::atomic_t) -> bool;
    fn blksnap_inflight_leave(inflight: *mut bindings::atomic_t);
    fn blksnap_inflight_wait(inflight: *mut bindings::atomic_t, draining: *mut bindings::atomic_t);
}

/// I/O in flight. Entering and waiting are full barriers: what a task does
/// before waiting is seen by every I/O that entered after the wait began
/// (it was refused), and the other way round.
///
/// # Invariants
///
/// Both counters are `atomic_t`s, initialised, at a fixed address (pinned)
/// for as long as a ticket points to them: dropping waits for the tickets.
#[pin_data(PinnedDrop)]
pub(crate) struct InFlight {
    #[pin]
    count: Opaque<bindings::atomic_t>,
    /// Tasks waiting to drain: new I/O is refused meanwhile, so that a
    /// stream of I/O cannot keep them waiting forever.
    #[pin]
    draining: Opaque<bindings::atomic_t>,
    #[pin]
    _pinned: PhantomPinned,
}

// SAFETY: the counters are only changed atomically.
unsafe impl Send for InFlight {}
// SAFETY: as above.
unsafe impl Sync for InFlight {}

impl InFlight {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            count: Opaque::new(bindings::atomic_t { counter: 0 }),
            draining: Opaque::new(bindings::atomic_t { counter: 0 }),
            _pinned: PhantomPinned,
        })
    }

    /// One more I/O in flight until the ticket is dropped; `None` while a
    /// task waits to drain.
    pub(crate) fn try_enter(&self) -> Option<InFlightTicket> {
        // SAFETY: by the type invariant both counters are live atomics.
        let entered = unsafe { blksnap_inflight_enter(self.count.get(), self.draining.get()) };
        // By the type invariant the counter stays put until the ticket is
        // dropped. `Opaque<T>` has the layout of `T`.
        entered.then(|| InFlightTicket {
            count: NonNull::from(&self.count).cast(),
        })
    }

    /// How many are in flight now.
    pub(crate) fn count(&self) -> usize {
        // SAFETY: by the type invariant the counter is a live atomic;
        // `atomic_t` is an `int`, read here atomically.
        let count = unsafe { core::sync::atomic::AtomicI32::from_ptr(self.count.get().cast()) };
        count.load(core::sync::atomic::Ordering::Relaxed).max(0) as usize
    }

    /// Wait until no I/O is in flight.
    pub(crate) fn wait_idle(&self) {
        // SAFETY: by the type invariant both counters are live atomics.
        unsafe { blksnap_inflight_wait(self.count.get(), self.draining.get()) };
    }
}

#[pinned_drop]
impl PinnedDrop for InFlight {
    fn drop(self: Pin<&mut Self>) {
        // Tickets point here.
        self.wait_idle();
    }
}

/// One I/O in flight: leaves when dropped, from any context.
///
/// # Invariants
///
/// `count` is the counter of a live [`InFlight`], which this ticket entered.
pub(crate) struct InFlightTicket {
    count: NonNull<bindings::atomic_t>,
}

// SAFETY: leaving is an atomic decrement and a wake-up, fine from any
// thread or context.
unsafe impl Send for InFlightTicket {}

impl Drop for InFlightTicket {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the counter is live; this ticket
        // entered once and leaves once.
        unsafe { blksnap_inflight_leave(self.count.as_ptr()) };
    }
}
