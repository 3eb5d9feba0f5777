// SPDX-License-Identifier: GPL-2.0
//! Snapshots: a group of devices taken together, their difference storage
//! and events, and the module's list of them.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    str::CStr,
    sync::{Arc, Mutex},
};

use crate::{
    diff_area::DiffArea,
    diff_storage::DiffStorage,
    event_queue::{Event, EventQueue},
    kapi::{
        bdev::BdevFile,
        blkfilter::FilterRef,
        errno,
        params::{self, DelayPoint},
        random,
    },
    snapimage::{ImageNames, SnapImage, NAME_LEN},
    tracker::Tracker,
};

/// The id user space names a snapshot by (a random UUID).
pub(crate) type SnapshotId = [u8; 16];

/// One device of a snapshot.
struct Member {
    tracker: FilterRef<Tracker>,
    orig: Arc<BdevFile>,
    /// Set while the snapshot is taken.
    taken: Option<(Arc<DiffArea>, SnapImage)>,
}

impl Member {
    /// Stop copy-on-write into `area` and let the writes it holds go on.
    fn stop_cow(&self, area: &DiffArea) {
        {
            // With the queue frozen no write is in the filter: none can
            // reach the area once this returns.
            let queue = self.orig.bdev().start_queue_freeze();
            queue.wait();
            self.tracker.stop_cow();
        }
        // Before a later take, or the writes would pass it uncopied.
        area.drain();
    }
}

struct SnapshotState {
    members: KVec<Member>,
    taken: bool,
    /// Destroyed: a caller that found it before cannot add or take.
    destroyed: bool,
}

#[pin_data]
pub(crate) struct Snapshot {
    id: SnapshotId,
    /// Creation order: SNAPSHOT_COLLECT lists snapshots by it.
    serial: u64,
    storage: Arc<DiffStorage>,
    events: Arc<EventQueue>,
    #[pin]
    state: Mutex<SnapshotState>,
}

/// What SNAPSHOTINFO reports for a device.
pub(crate) struct MemberInfo {
    pub(crate) error: i32,
    pub(crate) image: [u8; NAME_LEN],
}

impl MemberInfo {
    /// A device with no image: no error, no name.
    pub(crate) const NONE: Self = Self {
        error: 0,
        image: [0; NAME_LEN],
    };
}

impl Snapshot {
    fn new(path: &CStr, limit: u64, serial: u64) -> Result<Arc<Self>> {
        let events = Arc::pin_init(EventQueue::new(), GFP_KERNEL)?;
        let storage = DiffStorage::open(path, limit, events.clone())?;
        let mut id = [0u8; 16];
        random::fill(&mut id);
        // An RFC 4122 version 4 UUID.
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        Arc::pin_init(
            pin_init!(Self {
                id,
                serial,
                storage,
                events,
                state <- new_mutex!(SnapshotState {
                    members: KVec::new(),
                    taken: false,
                    destroyed: false,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Add the device `tracker` filters.
    fn add(&self, tracker: FilterRef<Tracker>) -> Result {
        let mut state = self.state.lock();
        if state.destroyed {
            return Err(ESRCH);
        }
        if state.taken {
            return Err(EBUSY);
        }
        let dev_id = tracker.dev_id();
        // A device detached and attached again has a new tracker.
        if state.members.iter().any(|m| m.tracker.dev_id() == dev_id) {
            return Err(errno::ealready());
        }
        let orig = Arc::new(BdevFile::open(dev_id)?, GFP_KERNEL)?;
        if orig.bdev().unsupported() {
            return Err(EPERM);
        }
        if self.storage.reaches(orig.bdev()) {
            return Err(EINVAL);
        }
        state.members.reserve(1, GFP_KERNEL)?;
        tracker.join(self.id)?;
        state.members.push(
            Member {
                tracker,
                orig,
                taken: None,
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    /// Take the snapshot: freeze every device, switch change tracking and
    /// start copy-on-write, thaw, then show the images under the names
    /// held in `names`. All or nothing.
    fn take(&self, names: &Arc<ImageNames>) -> Result {
        let mut state = self.state.lock();
        if state.destroyed {
            return Err(ESRCH);
        }
        if state.taken {
            return Err(errno::ealready());
        }
        if state.members.is_empty() {
            return Err(ENODEV);
        }
        // The storage's file system may have gained a member since the add.
        if state.members.iter().any(|m| self.storage.reaches(m.orig.bdev())) {
            return Err(EINVAL);
        }
        // Everything that can fail or allocate is done before the freeze.
        let mut prepared = KVec::with_capacity(state.members.len(), GFP_KERNEL)?;
        let mut holds = KVec::with_capacity(state.members.len(), GFP_KERNEL)?;
        for m in state.members.iter() {
            holds.push(names.hold(m.orig.bdev().dev_id())?, GFP_KERNEL)?;
            let area = DiffArea::new(m.tracker.clone(), m.orig.clone(), self.storage.clone(), self.events.clone())?;
            let new_map = m.tracker.prepare_take(area.capacity())?;
            prepared.push((area, new_map), GFP_KERNEL)?;
        }
        let mut images = KVec::with_capacity(prepared.len(), GFP_KERNEL)?;
        // All file systems first: two members may share a disk's queue.
        let mut frozen_fs = KVec::with_capacity(state.members.len(), GFP_KERNEL)?;
        for m in state.members.iter() {
            frozen_fs.push(m.orig.bdev().freeze_fs()?, GFP_KERNEL)?;
        }
        // Start every freeze, then wait: the queues drain in parallel.
        let mut frozen_queues = KVec::with_capacity(state.members.len(), GFP_KERNEL)?;
        for m in state.members.iter() {
            frozen_queues.push(m.orig.bdev().start_queue_freeze(), GFP_KERNEL)?;
        }
        for queue in frozen_queues.iter() {
            queue.wait();
        }
        // Nothing here can fail: every device switches, or none.
        for (m, (area, new_map)) in state.members.iter().zip(prepared.iter_mut()) {
            m.tracker.take(new_map.take(), area.clone());
        }
        drop(frozen_queues);
        drop(frozen_fs);

        for ((m, (area, _)), hold) in state.members.iter().zip(prepared.iter()).zip(holds) {
            match SnapImage::new(m.orig.bdev(), area.clone(), hold) {
                Ok(image) => images.push(image, GFP_KERNEL)?,
                Err(e) => {
                    drop(images);
                    for (m, (area, _)) in state.members.iter().zip(prepared.iter()) {
                        m.stop_cow(area);
                    }
                    return Err(e);
                }
            }
        }
        self.storage.prepare();
        for ((m, (area, _)), image) in state.members.iter_mut().zip(prepared).zip(images) {
            m.taken = Some((area, image));
        }
        state.taken = true;
        Ok(())
    }

    /// Remove the images, stop copy-on-write and let the devices go; the
    /// storage is released with the last reference to it. Nothing can be
    /// added or taken afterwards.
    fn release(&self) {
        let mut state = self.state.lock();
        state.destroyed = true;
        for m in state.members.iter_mut() {
            if let Some((area, image)) = m.taken.take() {
                // No new image I/O once the image is gone, so none sees a
                // write that is no longer copied.
                drop(image);
                m.stop_cow(&area);
            }
            m.tracker.leave();
        }
        state.members = KVec::new();
    }

    /// SNAPSHOTINFO for `tracker`'s device.
    pub(crate) fn member_info(&self, tracker: &FilterRef<Tracker>) -> MemberInfo {
        let state = self.state.lock();
        let taken = state.members.iter().find(|m| m.tracker.same(tracker)).and_then(|m| m.taken.as_ref());
        match taken {
            Some((area, image)) => MemberInfo {
                error: area.error(),
                image: image.name(),
            },
            // Not taken, or the snapshot let the device go meanwhile.
            None => MemberInfo::NONE,
        }
    }

    pub(crate) fn wait_event(&self, timeout_ms: u32) -> Result<Event> {
        self.events.wait(timeout_ms)
    }
}

/// The module's snapshots, by id.
#[pin_data(PinnedDrop)]
pub(crate) struct Snapshots {
    #[pin]
    all: Mutex<RBTree<SnapshotId, Arc<Snapshot>>>,
    created: AtomicU64,
    image_names: Arc<ImageNames>,
}

impl Snapshots {
    pub(crate) fn new() -> Result<impl PinInit<Self>> {
        let image_names = ImageNames::new()?;
        Ok(pin_init!(Self {
            all <- new_mutex!(RBTree::new()),
            created: AtomicU64::new(0),
            image_names,
        }))
    }

    /// A new snapshot with the storage at `path`, up to `limit` sectors.
    pub(crate) fn create(&self, path: &CStr, limit: u64) -> Result<SnapshotId> {
        let snapshot = Snapshot::new(path, limit, self.created.fetch_add(1, Ordering::Relaxed))?;
        let id = snapshot.id;
        let node = RBTreeNode::new(id, snapshot, GFP_KERNEL)?;
        self.all.lock().insert(node);
        pr_info!("snapshot created\n");
        Ok(id)
    }

    /// The snapshot `id`; ESRCH if there is none.
    pub(crate) fn find(&self, id: &SnapshotId) -> Result<Arc<Snapshot>> {
        self.all.lock().get(id).cloned().ok_or(ESRCH)
    }

    /// SNAPSHOTADD of the device `tracker` filters.
    pub(crate) fn add(&self, id: &SnapshotId, tracker: FilterRef<Tracker>) -> Result {
        let snapshot = self.find(id)?;
        params::debug_delay(DelayPoint::SnapshotFound);
        snapshot.add(tracker)
    }

    pub(crate) fn take(&self, id: &SnapshotId) -> Result {
        let snapshot = self.find(id)?;
        params::debug_delay(DelayPoint::SnapshotFound);
        snapshot.take(&self.image_names)
    }

    pub(crate) fn destroy(&self, id: &SnapshotId) -> Result {
        let snapshot = self.all.lock().remove(id).ok_or(ENODEV)?;
        snapshot.release();
        pr_info!("snapshot destroyed\n");
        Ok(())
    }

    /// The ids of all snapshots, oldest first.
    pub(crate) fn ids(&self) -> Result<KVec<SnapshotId>> {
        let all = self.all.lock();
        let mut by_age = KVec::new();
        for snapshot in all.values() {
            by_age.push((snapshot.serial, snapshot.id), GFP_KERNEL)?;
        }
        drop(all);
        by_age.sort_unstable_by_key(|&(serial, _)| serial);
        let mut ids = KVec::with_capacity(by_age.len(), GFP_KERNEL)?;
        for (_, id) in by_age {
            ids.push(id, GFP_KERNEL)?;
        }
        Ok(ids)
    }
}

#[pinned_drop]
impl PinnedDrop for Snapshots {
    fn drop(self: Pin<&mut Self>) {
        // Module unload: break the references between trackers and areas.
        for snapshot in self.all.lock().values() {
            snapshot.release();
        }
    }
}
