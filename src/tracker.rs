// SPDX-License-Identifier: GPL-2.0
//! The tracker: blksnap's state for one filtered block device.
#![forbid(unsafe_code)]

use kernel::{
    new_mutex, new_spinlock,
    prelude::*,
    sync::{Arc, Mutex, SpinLock},
    uaccess::UserSlice,
};

use crate::{
    cbt_map::{CbtInfo, CbtMap},
    diff_area::DiffArea,
    kapi::{
        bdev::BlockDevice,
        bio::FilteredBio,
        blkfilter::{Filter, FilterRef},
        errno,
        params::{self, DelayPoint},
    },
    math::cbt::{table_slice, CbtLimits},
    snapshot::SnapshotId,
};

/// What a write changes: the CBT map that marks it and the snapshot area
/// that copies on write. One lock, so that a write is marked in the table of
/// the snapshot whose copy-on-write it gets, whatever a take does meanwhile.
struct WriteState {
    cbt: CbtMap,
    /// Where copy-on-write goes while a snapshot of the device is taken.
    cow: Option<Arc<DiffArea>>,
}

/// Per-device state, created when the filter is attached.
pub(crate) struct Tracker {
    dev_id: (u32, u32),
    // Taken on the bio path, so a spinlock, held only to copy bytes.
    writes: Pin<KBox<SpinLock<WriteState>>>,
    /// The snapshot the device belongs to (at most one).
    snapshot: Pin<KBox<Mutex<Option<SnapshotId>>>>,
}

fn cbt_limits() -> CbtLimits {
    let p = params::tracking();
    CbtLimits {
        min_shift: p.block_minimum_shift,
        max_shift: p.block_maximum_shift,
        max_count: p.block_maximum_count.into(),
    }
}

impl Tracker {
    pub(crate) fn dev_id(&self) -> (u32, u32) {
        self.dev_id
    }

    pub(crate) fn cbt_info(&self) -> CbtInfo {
        self.writes.lock().cbt.info()
    }

    /// Copy `length` bytes of the read table from `offset` to `out`, a page
    /// at a time so that the lock is never held across a user copy.
    pub(crate) fn read_cbt(&self, offset: u32, length: u32, out: UserSlice) -> Result {
        let mut out = out.writer();
        let table_len = self.writes.lock().cbt.read_table().len();
        let range = table_slice(table_len, offset, length).ok_or_else(errno::enodata)?;
        let mut page = KVec::from_elem(0u8, 4096, GFP_KERNEL)?;
        let mut pos = range.start;
        while pos < range.end {
            let n = (range.end - pos).min(page.len());
            {
                let writes = self.writes.lock();
                // A take after a resize may have replaced the table since.
                let part = writes.cbt.read_table().get(pos..pos + n).ok_or(EAGAIN)?;
                page[..n].copy_from_slice(part);
            }
            out.write_slice(&page[..n])?;
            pos += n;
        }
        Ok(())
    }

    /// Mark sectors as changed that an image write changed.
    pub(crate) fn mark_dirty(&self, sector: u64, count: u64) {
        self.writes.lock().cbt.mark_dirty(sector, count);
    }

    /// Mark sectors as changed that user space names; EINVAL for a range
    /// past the device's end.
    pub(crate) fn mark_dirty_checked(&self, sector: u64, count: u64) -> Result {
        let mut writes = self.writes.lock();
        match sector.checked_add(count) {
            Some(end) if end <= writes.cbt.capacity() => {
                writes.cbt.mark_dirty(sector, count);
                Ok(())
            }
            _ => Err(EINVAL),
        }
    }

    /// Make the device a member of snapshot `id`.
    pub(crate) fn join(&self, id: SnapshotId) -> Result {
        let mut snapshot = self.snapshot.lock();
        match *snapshot {
            Some(other) if other == id => Err(errno::ealready()),
            Some(_) => Err(EBUSY),
            None => {
                *snapshot = Some(id);
                Ok(())
            }
        }
    }

    pub(crate) fn leave(&self) {
        *self.snapshot.lock() = None;
    }

    pub(crate) fn snapshot_id(&self) -> Option<SnapshotId> {
        *self.snapshot.lock()
    }

    /// New tables for a take, if the device's capacity changed since
    /// tracking began (tracking starts over then).
    pub(crate) fn prepare_take(&self, capacity: u64) -> Result<Option<CbtMap>> {
        if self.writes.lock().cbt.capacity() == capacity {
            return Ok(None);
        }
        pr_info!("{}:{} was resized: change tracking starts over\n", self.dev_id.0, self.dev_id.1);
        Ok(Some(CbtMap::new(capacity, &cbt_limits())?))
    }

    /// The snapshot is taken (the device is frozen): switch the tables and
    /// start copy-on-write into `area`, in one step for the write path.
    pub(crate) fn take(&self, new_map: Option<CbtMap>, area: Arc<DiffArea>) {
        let old_map = {
            let mut writes = self.writes.lock();
            let old_map = new_map.map(|map| core::mem::replace(&mut writes.cbt, map));
            writes.cbt.switch();
            writes.cow = Some(area);
            old_map
        };
        // Freed (vfree) outside the spinlock.
        drop(old_map);
    }

    /// Stop copy-on-write.
    pub(crate) fn stop_cow(&self) {
        // Dropped outside the lock: it may be the last reference.
        let area = self.writes.lock().cow.take();
        drop(area);
    }
}

impl Filter for Tracker {
    fn attach(bdev: &BlockDevice, _opt: UserSlice) -> Result<Self> {
        let dev_id = bdev.dev_id();
        let capacity = bdev.nr_sectors();
        let writes = WriteState {
            cbt: CbtMap::new(capacity, &cbt_limits())?,
            cow: None,
        };
        let writes = KBox::pin_init(new_spinlock!(writes), GFP_KERNEL)?;
        pr_info!("tracker attached to {}:{}, {} sectors\n", dev_id.0, dev_id.1, capacity);
        Ok(Self {
            dev_id,
            writes,
            snapshot: KBox::pin_init(new_mutex!(None), GFP_KERNEL)?,
        })
    }

    fn ctl(this: &FilterRef<Self>, cmd: u32, buf: UserSlice) -> Result<u32> {
        crate::ctl::tracker_ctl(this, cmd, buf)
    }

    fn submit_bio(&self, bio: FilteredBio) -> Option<FilteredBio> {
        if !bio.changes_data() {
            return Some(bio);
        }
        let (sector, count) = bio.sectors();
        params::debug_delay(DelayPoint::CowDecision);
        let area = {
            let mut writes = self.writes.lock();
            writes.cbt.mark(sector, count);
            writes.cow.clone()
        };
        match area {
            Some(area) => area.filter_write(bio),
            None => Some(bio),
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        pr_info!("tracker detached from {}:{}\n", self.dev_id.0, self.dev_id.1);
    }
}
