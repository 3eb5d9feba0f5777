// SPDX-License-Identifier: GPL-2.0
//! The tracker: blksnap's state for one filtered block device.
#![forbid(unsafe_code)]

use kernel::{prelude::*, uaccess::UserSlice};

use crate::kapi::{bdev::BlockDevice, bio::Bio, blkfilter::Filter};

/// Per-device state, created when the filter is attached.
pub(crate) struct Tracker {
    dev_id: (u32, u32),
}

impl Filter for Tracker {
    fn attach(bdev: &BlockDevice, _opt: UserSlice) -> Result<Self> {
        let dev_id = bdev.dev_id();
        pr_info!(
            "tracker attached to {}:{}, {} sectors\n",
            dev_id.0,
            dev_id.1,
            bdev.nr_sectors()
        );
        Ok(Self { dev_id })
    }

    fn ctl(&self, cmd: u32, buf: UserSlice) -> Result<u32> {
        crate::ctl::tracker_ctl(self, cmd, buf)
    }

    fn submit_bio(&self, _bio: &Bio) -> bool {
        false
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        pr_info!("tracker detached from {}:{}\n", self.dev_id.0, self.dev_id.1);
    }
}
