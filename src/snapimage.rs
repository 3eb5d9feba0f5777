// SPDX-License-Identifier: GPL-2.0
//! Snapshot images: the disk `/dev/blksnap-<major>-<minor>` that shows a
//! device as it was when the snapshot was taken.
#![forbid(unsafe_code)]

use kernel::{fmt, prelude::*, str::CString, sync::Arc};

use crate::{
    diff_area::DiffArea,
    kapi::{bdev::BlockDevice, disk::Disk},
};

/// Length of an image name in SNAPSHOTINFO, NUL included.
pub(crate) const NAME_LEN: usize = crate::kapi::uapi::IMAGE_DISK_NAME_LEN;

pub(crate) struct SnapImage {
    _disk: Disk<DiffArea>,
    name: CString,
}

impl SnapImage {
    /// Show `area`'s view of `orig` as a new disk, with the original's
    /// capacity and block sizes.
    pub(crate) fn new(orig: &BlockDevice, area: Arc<DiffArea>) -> Result<Self> {
        let (major, minor) = orig.dev_id();
        let name = CString::try_from_fmt(fmt!("blksnap-{}-{}", major, minor))?;
        if name.len() >= NAME_LEN {
            return Err(EINVAL);
        }
        let disk = Disk::new(&name, area.capacity(), &orig.limits(), area)?;
        pr_info!("image {} created\n", &*name);
        Ok(Self { _disk: disk, name })
    }

    /// The disk's name, NUL-padded.
    pub(crate) fn name(&self) -> [u8; NAME_LEN] {
        let mut out = [0u8; NAME_LEN];
        let bytes = self.name.as_bytes();
        out[..bytes.len()].copy_from_slice(bytes);
        out
    }
}
