// SPDX-License-Identifier: GPL-2.0
//! The difference storage of a snapshot: a regular file (grown on demand), a
//! block device, or an unnamed file in a directory, where the chunks that
//! writes would overwrite are kept.
#![forbid(unsafe_code)]

use core::{
    ops::Range,
    sync::atomic::{AtomicBool, Ordering},
};
use kernel::{
    new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, Mutex},
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use crate::{
    event_queue::{EventKind, EventQueue},
    kapi::{
        bdev::{BdevFile, BlockDevice},
        bio::DiskBio,
        buffer::{self, ChunkBuf},
        file::{File, OpenMode},
        params,
    },
    math::{
        cbt::SECTOR_SHIFT,
        storage::{Growth, StorageSpace},
    },
};

#[pin_data]
pub(crate) struct DiffStorage {
    file: File,
    /// The storage device, when the storage is one: image reads of stored
    /// chunks are sent there.
    device: Option<Arc<BdevFile>>,
    // Held across fallocate: allocations wait for a growth in progress.
    #[pin]
    space: Mutex<StorageSpace>,
    /// A file grows up to the limit; a block device cannot grow, and its
    /// running out corrupts the snapshot without a no_space event.
    grows: bool,
    events: Arc<EventQueue>,
    limit_reported: AtomicBool,
    #[pin]
    grow_work: Work<DiffStorage>,
}

impl_has_work! {
    impl HasWork<Self> for DiffStorage { self.grow_work }
}

impl WorkItem for DiffStorage {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let mut space = this.space.lock();
        if let Growth::Grow(sectors) = space.growth() {
            if let Err(e) = this.grow(&mut space, sectors) {
                pr_warn!("difference storage did not grow: error {}\n", e.to_errno());
            }
        }
    }
}

impl DiffStorage {
    /// Open the storage at `path` for a snapshot whose storage may use up to
    /// `limit` sectors.
    pub(crate) fn open(path: &CStr, limit: u64, events: Arc<EventQueue>) -> Result<Arc<Self>> {
        if limit == 0 {
            return Err(EINVAL);
        }
        let mut file = match File::open(path, OpenMode::Exclusive) {
            Err(e) if e == EISDIR => File::open(path, OpenMode::TmpFileIn)?,
            r => r?,
        };
        let size = file.size()? >> SECTOR_SHIFT;
        let step = u64::from(params::snapshot().diff_storage_minimum);
        let grows = !file.is_bdev();
        // Truncated or overwritten, a file would give back wrong data for
        // stored chunks. A file somebody else has open for writing is still
        // taken, as upstream does, but not guarded.
        if grows {
            if let Err(e) = file.deny_other_writers() {
                pr_warn!("difference storage is open for writing elsewhere, not guarded: error {}\n", e.to_errno());
            }
        }
        let device = match file.bdev_id() {
            Some(dev_id) => Some(Arc::new(BdevFile::open(dev_id)?, GFP_KERNEL)?),
            None => None,
        };
        let space = if grows {
            StorageSpace::new(size, limit, step)
        } else {
            // A device does not grow: the limit only caps how much is used.
            let capacity = size.min(limit);
            StorageSpace::new(capacity, capacity, step)
        };
        Arc::pin_init(
            pin_init!(Self {
                file,
                device,
                space <- new_mutex!(space),
                grows,
                events,
                limit_reported: AtomicBool::new(false),
                grow_work <- new_work!("DiffStorage::grow_work"),
            }),
            GFP_KERNEL,
        )
    }

    /// The storage device, when the storage is one.
    pub(crate) fn device(&self) -> Option<&Arc<BdevFile>> {
        self.device.as_ref()
    }

    /// Whether storing can write to `bdev`: such a device cannot be in the
    /// snapshot, its copy-on-write would wait for itself.
    pub(crate) fn reaches(&self, bdev: &BlockDevice) -> bool {
        self.file.reaches(bdev)
    }

    /// Start growing ahead of need.
    pub(crate) fn prepare(self: &Arc<Self>) {
        if let Growth::Grow(_) = self.space.lock().growth() {
            crate::enqueue::<_, 0>(self.clone());
        }
    }

    fn grow(&self, space: &mut StorageSpace, sectors: u64) -> Result {
        self.file.allocate(space.capacity << SECTOR_SHIFT, sectors << SECTOR_SHIFT)?;
        space.grown(sectors);
        Ok(())
    }

    /// Tell user space, once, that the storage asked to grow to `requested`
    /// sectors past its limit.
    fn report_limit(&self, requested: u64) {
        if self.grows && !self.limit_reported.swap(true, Ordering::Relaxed) {
            pr_warn!("difference storage limit reached\n");
            self.events.push(EventKind::NoSpace { requested });
        }
    }

    /// Space for `sectors`: returns its first sector. Grows the storage now if
    /// it must (the caller is a worker and may wait), in the background if it
    /// soon will; ENOSPC when the limit leaves no room.
    pub(crate) fn alloc(self: &Arc<Self>, sectors: u64) -> Result<u64> {
        let mut space = self.space.lock();
        loop {
            if let Some(start) = space.alloc(sectors) {
                match space.growth() {
                    Growth::None => {}
                    Growth::Grow(_) => crate::enqueue::<_, 0>(self.clone()),
                    Growth::LimitReached => self.report_limit(space.requested(0)),
                }
                return Ok(start);
            }
            match space.next_step() {
                Some(step) => {
                    if let Err(e) = self.grow(&mut space, step) {
                        pr_err!("difference storage cannot grow: error {}\n", e.to_errno());
                        return Err(ENOSPC);
                    }
                }
                None => {
                    self.report_limit(space.requested(sectors));
                    return Err(ENOSPC);
                }
            }
        }
    }

    /// Write the buffers one after the other from `sector` on, in one I/O;
    /// each but the last holds whole pages.
    pub(crate) fn write<'a>(&self, bufs: impl Iterator<Item = &'a ChunkBuf> + Clone, sector: u64) -> Result {
        buffer::write_all_to_file(&self.file, bufs, sector << SECTOR_SHIFT)
    }

    pub(crate) fn read(&self, buf: &mut ChunkBuf, sector: u64) -> Result {
        buf.read_from_file(&self.file, sector << SECTOR_SHIFT)
    }

    /// Fill `range` of `bio`'s data from byte `offset` of the chunk stored
    /// at `sector`.
    pub(crate) fn read_part(&self, bio: &mut DiskBio, range: Range<usize>, sector: u64, offset: usize) -> Result {
        bio.read_part_from_file(range, &self.file, (sector << SECTOR_SHIFT) + offset as u64)
    }
}
