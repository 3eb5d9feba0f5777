// SPDX-License-Identifier: GPL-2.0
//! blksnap: block device snapshots and change block tracking.
//!
//! Layers: `kapi` wraps the C interfaces (all `unsafe` lives there), the
//! domain modules (`tracker`, `snapshot`, ...) are safe Rust, and `ctl` turns
//! ioctls into typed requests and errors into errno values.

// The initialiser of `DiffArea` (pin_init!) nests deeper than the default.
#![recursion_limit = "256"]

mod cbt_map;
mod ctl;
mod diff_area;
mod diff_storage;
mod event_queue;
mod kapi;
mod math;
mod snapimage;
mod snapshot;
mod tracker;

use kernel::{c_str, prelude::*, workqueue::RawWorkItem};

use kapi::{
    bioset::BioSet,
    global::{Global, Published},
    workqueue::OwnedQueue,
};
use snapshot::Snapshots;

module! {
    type: Blksnap,
    name: "blksnap",
    author: "blksnap-rs developers",
    description: "Block device snapshots and change block tracking",
    license: "GPL",
}

static SNAPSHOTS: Global<Snapshots> = Global::new();
static WORKQUEUE: Global<OwnedQueue> = Global::new();

/// The module's snapshots.
pub(crate) fn snapshots() -> Result<&'static Snapshots> {
    SNAPSHOTS.get().ok_or(ENODEV)
}

/// Run `item`'s work `ID` on the module's workqueue (if it is not pending
/// already).
pub(crate) fn enqueue<W, const ID: u64>(item: W)
where
    W: RawWorkItem<ID> + Send + 'static,
{
    // Without the queue (never while anything is attached) the item is
    // dropped, and with it its held bios: writes go on, image reads fail.
    if let Some(wq) = WORKQUEUE.get() {
        let _ = wq.queue().enqueue::<W, ID>(item);
    }
}

struct Blksnap {
    // Dropped in this order: no new control request, no snapshot (which
    // stops copy-on-write and removes the images), all work done, then no
    // new attach, and no bio of the module's own left.
    _control: kapi::control::Registration,
    _snapshots: Published<Snapshots>,
    _workqueue: Published<OwnedQueue>,
    _filter: kapi::blkfilter::Registration<tracker::Tracker>,
    _bio_set: Published<BioSet>,
}

impl kernel::Module for Blksnap {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let bio_set = BioSet::publish()?;
        let workqueue = WORKQUEUE.publish(KBox::pin(OwnedQueue::new()?, GFP_KERNEL)?);
        let snapshots = SNAPSHOTS.publish(KBox::pin_init(Snapshots::new()?, GFP_KERNEL)?);
        let filter = kapi::blkfilter::Registration::new(c_str!("blksnap"), module)?;
        let control = kapi::control::Registration::new()?;
        Ok(Self {
            _control: control,
            _snapshots: snapshots,
            _workqueue: workqueue,
            _filter: filter,
            _bio_set: bio_set,
        })
    }
}
