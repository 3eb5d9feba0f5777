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
        params,
    },
    math::cbt::{table_slice, CbtLimits},
    snapshot::SnapshotId,
};

/// Per-device state, created when the filter is attached.
pub(crate) struct Tracker {
    dev_id: (u32, u32),
    // Marked from the bio path, so a spinlock, held only to copy bytes.
    cbt: Pin<KBox<SpinLock<CbtMap>>>,
    /// Where copy-on-write goes while a snapshot of the device is taken.
    cow: Pin<KBox<SpinLock<Option<Arc<DiffArea>>>>>,
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
        self.cbt.lock().info()
    }

    /// Copy `length` bytes of the read table from `offset` to `out`, a page
    /// at a time so that the lock is never held across a user copy.
    pub(crate) fn read_cbt(&self, offset: u32, length: u32, out: UserSlice) -> Result {
        let mut out = out.writer();
        let table_len = self.cbt.lock().read_table().len();
        let range = table_slice(table_len, offset, length).ok_or(EINVAL)?;
        let mut page = KVec::from_elem(0u8, 4096, GFP_KERNEL)?;
        let mut pos = range.start;
        while pos < range.end {
            let n = (range.end - pos).min(page.len());
            page[..n].copy_from_slice(&self.cbt.lock().read_table()[pos..pos + n]);
            out.write_slice(&page[..n])?;
            pos += n;
        }
        Ok(())
    }

    /// Mark sectors as changed, as user space asks (or an image write does).
    pub(crate) fn mark_dirty(&self, sector: u64, count: u64) {
        self.cbt.lock().mark_dirty(sector, count);
    }

    /// Make the device a member of snapshot `id`.
    pub(crate) fn join(&self, id: SnapshotId) -> Result {
        let mut snapshot = self.snapshot.lock();
        match *snapshot {
            Some(other) if other == id => Err(crate::kapi::errno::ealready()),
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
        if self.cbt.lock().capacity() == capacity {
            return Ok(None);
        }
        pr_info!("{}:{} was resized: change tracking starts over\n", self.dev_id.0, self.dev_id.1);
        Ok(Some(CbtMap::new(capacity, &cbt_limits())?))
    }

    /// The snapshot is taken (the device is frozen): switch the tables and
    /// start copy-on-write into `area`.
    pub(crate) fn take(&self, new_map: Option<CbtMap>, area: Arc<DiffArea>) {
        {
            let mut cbt = self.cbt.lock();
            if let Some(map) = new_map {
                *cbt = map;
            }
            cbt.switch();
        }
        *self.cow.lock() = Some(area);
    }

    /// Stop copy-on-write.
    pub(crate) fn stop_cow(&self) {
        // Dropped outside the lock: it may be the last reference.
        let area = self.cow.lock().take();
        drop(area);
    }
}

impl Filter for Tracker {
    fn attach(bdev: &BlockDevice, _opt: UserSlice) -> Result<Self> {
        let dev_id = bdev.dev_id();
        let capacity = bdev.nr_sectors();
        let cbt = KBox::pin_init(new_spinlock!(CbtMap::new(capacity, &cbt_limits())?), GFP_KERNEL)?;
        pr_info!("tracker attached to {}:{}, {} sectors\n", dev_id.0, dev_id.1, capacity);
        Ok(Self {
            dev_id,
            cbt,
            cow: KBox::pin_init(new_spinlock!(None), GFP_KERNEL)?,
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
        self.cbt.lock().mark(sector, count);
        let area = self.cow.lock().clone();
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
