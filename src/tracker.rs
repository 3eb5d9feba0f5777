// SPDX-License-Identifier: GPL-2.0
//! The tracker: blksnap's state for one filtered block device.
#![forbid(unsafe_code)]

use kernel::{new_spinlock, prelude::*, sync::SpinLock, uaccess::UserSlice};

use crate::{
    cbt_map::{CbtInfo, CbtMap},
    kapi::{bdev::BlockDevice, bio::Bio, blkfilter::Filter, params},
    math::cbt::{table_slice, CbtLimits},
};

/// Per-device state, created when the filter is attached.
pub(crate) struct Tracker {
    dev_id: (u32, u32),
    // Marked from the bio path, so a spinlock, held only to copy bytes.
    cbt: Pin<KBox<SpinLock<CbtMap>>>,
}

impl Tracker {
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

    /// Mark sectors as changed, as user space asks.
    pub(crate) fn mark_dirty(&self, sector: u64, count: u64) {
        self.cbt.lock().mark_dirty(sector, count);
    }
}

impl Filter for Tracker {
    fn attach(bdev: &BlockDevice, _opt: UserSlice) -> Result<Self> {
        let dev_id = bdev.dev_id();
        let p = params::tracking();
        let limits = CbtLimits {
            min_shift: p.block_minimum_shift,
            max_shift: p.block_maximum_shift,
            max_count: p.block_maximum_count.into(),
        };
        let capacity = bdev.nr_sectors();
        let cbt = KBox::pin_init(new_spinlock!(CbtMap::new(capacity, &limits)?), GFP_KERNEL)?;
        pr_info!("tracker attached to {}:{}, {} sectors\n", dev_id.0, dev_id.1, capacity);
        Ok(Self { dev_id, cbt })
    }

    fn ctl(&self, cmd: u32, buf: UserSlice) -> Result<u32> {
        crate::ctl::tracker_ctl(self, cmd, buf)
    }

    fn submit_bio(&self, bio: &Bio) -> bool {
        if bio.changes_data() {
            let (sector, count) = bio.sectors();
            self.cbt.lock().mark(sector, count);
        }
        false
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        pr_info!("tracker detached from {}:{}\n", self.dev_id.0, self.dev_id.1);
    }
}
