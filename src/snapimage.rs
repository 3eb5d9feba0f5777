// SPDX-License-Identifier: GPL-2.0
//! Snapshot images: the disk `/dev/blksnap-<major>-<minor>` that shows a
//! device as it was when the snapshot was taken.
#![forbid(unsafe_code)]

use kernel::{
    fmt, new_mutex,
    prelude::*,
    rbtree::RBTree,
    str::CString,
    sync::{Arc, Mutex},
};

use crate::{
    diff_area::DiffArea,
    kapi::{bdev::BlockDevice, disk::Disk},
};

/// Length of an image name in SNAPSHOTINFO, NUL included.
pub(crate) const NAME_LEN: usize = crate::kapi::uapi::IMAGE_DISK_NAME_LEN;

/// The devices whose image name is in use. A device detached and attached
/// again can join a new snapshot while an older one still shows its image:
/// the new image must not try to register the same name.
#[pin_data]
pub(crate) struct ImageNames {
    #[pin]
    held: Mutex<RBTree<(u32, u32), ()>>,
}

impl ImageNames {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(pin_init!(Self { held <- new_mutex!(RBTree::new()) }), GFP_KERNEL)
    }

    /// Hold the image name of the device `dev_id`; EBUSY while another
    /// image has it.
    pub(crate) fn hold(self: &Arc<Self>, dev_id: (u32, u32)) -> Result<NameHold> {
        let mut held = self.held.lock();
        if held.get(&dev_id).is_some() {
            return Err(EBUSY);
        }
        held.try_create_and_insert(dev_id, (), GFP_KERNEL)?;
        Ok(NameHold { names: self.clone(), dev_id })
    }
}

/// An image name held in [`ImageNames`] until this is dropped.
pub(crate) struct NameHold {
    names: Arc<ImageNames>,
    dev_id: (u32, u32),
}

impl Drop for NameHold {
    fn drop(&mut self) {
        self.names.held.lock().remove(&self.dev_id);
    }
}

pub(crate) struct SnapImage {
    // Dropped before the hold: the name is free once the disk is gone.
    _disk: Disk<DiffArea>,
    _hold: NameHold,
    name: CString,
}

impl SnapImage {
    /// Show `area`'s view of `orig` as a new disk, with the original's
    /// capacity and block sizes, under the name `hold` holds for it.
    pub(crate) fn new(orig: &BlockDevice, area: Arc<DiffArea>, hold: NameHold) -> Result<Self> {
        let (major, minor) = hold.dev_id;
        let name = CString::try_from_fmt(fmt!("blksnap-{}-{}", major, minor))?;
        if name.len() >= NAME_LEN {
            return Err(EINVAL);
        }
        let disk = Disk::new(&name, area.capacity(), &orig.limits(), area)?;
        pr_info!("image {} created\n", &*name);
        Ok(Self { _disk: disk, _hold: hold, name })
    }

    /// The disk's name, NUL-padded.
    pub(crate) fn name(&self) -> [u8; NAME_LEN] {
        let mut out = [0u8; NAME_LEN];
        let bytes = self.name.as_bytes();
        out[..bytes.len()].copy_from_slice(bytes);
        out
    }
}
