// SPDX-License-Identifier: GPL-2.0
//! A snapshot's events (corruption, storage limit reached), queued by the I/O
//! path and waited for by user space.
#![forbid(unsafe_code)]

use kernel::{
    new_condvar, new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{CondVar, CondVarTimeoutResult, SpinLock},
    time::{msecs_to_jiffies, Ktime},
};

/// What happened.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EventKind {
    /// The snapshot of device (major, minor) failed with `errno` (positive).
    Corrupted { dev_id: (u32, u32), errno: i32 },
    /// The storage reached its limit; it asked to grow to this many sectors.
    NoSpace { requested: u64 },
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    /// Monotonic time of the event, in nanoseconds.
    pub(crate) time_ns: i64,
    pub(crate) kind: EventKind,
}

struct Events {
    // A FIFO by sequence number (6.12's KVec cannot pop from the front).
    queue: RBTree<u64, Event>,
    next_seq: u64,
}

#[pin_data]
pub(crate) struct EventQueue {
    #[pin]
    events: SpinLock<Events>,
    #[pin]
    added: CondVar,
}

impl EventQueue {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            events <- new_spinlock!(Events { queue: RBTree::new(), next_seq: 0 }),
            added <- new_condvar!(),
        })
    }

    /// Queue an event. Called from the I/O path: if memory is short the event
    /// is lost, but the error it reports stays visible in SNAPSHOTINFO.
    pub(crate) fn push(&self, kind: EventKind) {
        let event = Event {
            time_ns: Ktime::ktime_get().to_ns(),
            kind,
        };
        let Ok(reservation) = RBTreeNodeReservation::new(GFP_KERNEL) else {
            pr_warn!("event lost: out of memory\n");
            return;
        };
        let mut events = self.events.lock();
        let seq = events.next_seq;
        events.next_seq += 1;
        events.queue.insert(reservation.into_node(seq, event));
        self.added.notify_all();
    }

    /// The oldest event, waiting up to `timeout_ms` for one: ENOENT when
    /// none came, EINTR on a signal.
    pub(crate) fn wait(&self, timeout_ms: u32) -> Result<Event> {
        let mut left = msecs_to_jiffies(timeout_ms);
        let mut events = self.events.lock();
        loop {
            if let Some(cursor) = events.queue.cursor_front() {
                let (_, node) = cursor.remove_current();
                return Ok(node.to_key_value().1);
            }
            if left == 0 {
                return Err(ENOENT);
            }
            match self.added.wait_interruptible_timeout(&mut events, left) {
                CondVarTimeoutResult::Timeout => left = 0,
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
            }
        }
    }
}
