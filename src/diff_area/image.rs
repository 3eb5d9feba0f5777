// SPDX-License-Identifier: GPL-2.0
//! The I/O of the snapshot image: a read goes straight to where its data
//! is, split into runs of the original (chunks nobody changed) and of the
//! storage device (stored chunks); the rest (chunks in memory, storage in a
//! file, and writes) to a worker of their own that takes each chunk's part
//! from memory, the storage or the original.
#![forbid(unsafe_code)]

use core::{
    cell::Cell,
    sync::atomic::{AtomicI32, Ordering},
};
use kernel::{
    init::InPlaceWrite,
    prelude::*,
    sync::Arc,
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use super::{DiffArea, Held, Place, StateGuard, IMAGE_WORK};
use crate::kapi::{
    bdev::{BdevFile, BlockDevice},
    bio::{DiskBio, DiskOp, ReadEnd, ReadPiece},
    blkfilter::FilterId,
    buffer::{Alloc, ChunkBuf},
    disk::DiskHandler,
    inflight::InFlightTicket,
    task::NoIo,
};
use crate::math::{cbt::SECTOR_SHIFT, read_plan::ReadPlan};

/// One image bio and the work that does it: image I/O runs concurrently,
/// each bio in a worker of its own.
#[pin_data]
struct ImageIo {
    area: Arc<DiffArea>,
    bio: Cell<Option<DiskBio>>,
    #[pin]
    work: Work<ImageIo>,
}

impl_has_work! {
    impl HasWork<Self> for ImageIo { self.work }
}

impl WorkItem for ImageIo {
    type Pointer = Pin<KBox<Self>>;

    fn run(this: Pin<KBox<Self>>) {
        let _noio = NoIo::enter();
        if let Some(mut bio) = this.bio.take() {
            let result = this.area.image_io(&mut bio);
            bio.end(result);
        }
    }
}

/// The bios that found no memory for an `ImageIo`, one after the other.
impl WorkItem<IMAGE_WORK> for DiffArea {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let _noio = NoIo::enter();
        while let Some(mut bio) = this.pop_image_bio() {
            let result = this.image_io(&mut bio);
            bio.end(result);
        }
    }
}

impl DiffArea {
    fn pop_image_bio(&self) -> Option<DiskBio> {
        self.image_bios.lock().pop()
    }

    /// Send an image read straight to where its data is, without waiting:
    /// each chunk's part to the original if the chunk is not preserved, to
    /// the storage device if it is stored there; gives back any other bio,
    /// and a read the worker must do.
    fn read_direct(&self, bio: DiskBio) -> Option<DiskBio> {
        if bio.op() != DiskOp::Read {
            return Some(bio);
        }
        let (sector, count) = bio.sectors();
        if sector.checked_add(count).map_or(true, |end| end > self.geometry.capacity)
            || !self.tracker.is_attached_to(self.orig.bdev())
        {
            return Some(bio);
        }
        let chunks = self.geometry.chunks(sector, count);
        // Entered before looking: a chunk preserved after this look becomes
        // writable only once the read is over (`preserve_for`).
        let Some(ticket) = self.original_reads.try_enter() else {
            return Some(bio);
        };
        if chunks.clone().all(|c| !self.preserved.get(c)) {
            let pieces = [ReadPiece { target: ORIGINAL, sector, len: bio.len() }];
            let read = self.image_read_end(Some(ticket));
            return bio.read_async([self.orig.clone()], &pieces, read).err().map(|(bio, _)| bio);
        }
        let Some(device) = self.storage.device() else {
            return Some(bio);
        };
        let Some(plan) = self.plan_read(sector, count) else {
            return Some(bio);
        };
        let ticket = plan.reads(ORIGINAL).then_some(ticket);
        let targets = [self.orig.clone(), device.clone()];
        bio.read_async(targets, plan.pieces(), self.image_read_end(ticket)).err().map(|(bio, _)| bio)
    }

    /// Where the image's `count` sectors from `sector` are, as runs of the
    /// original and of the storage device (`ORIGINAL`, `STORAGE`), if every
    /// chunk they touch is either not preserved or stored (not in memory):
    /// a stored chunk stays where it is, and a chunk found not preserved
    /// stays on the original while the caller's ticket is held. Not for the
    /// last chunk of a device that ends inside a chunk, if preserved: it may
    /// have been too short for direct I/O, and so written through the
    /// storage's page cache.
    fn plan_read(&self, sector: u64, count: u64) -> Option<ReadPlan> {
        let state = self.state.lock();
        ReadPlan::new(&self.geometry, sector, count, |chunk| {
            let (first, sectors) = self.geometry.chunk_sectors(chunk);
            if !self.preserved.get(chunk) {
                return Some((ORIGINAL, first));
            }
            let partial = chunk + 1 == self.geometry.count && sectors != self.geometry.sectors();
            if partial || state.held.get(&chunk).is_some() {
                return None;
            }
            Some((STORAGE, state.stored_at.get(chunk)?))
        })
    }

    /// How an image read sent on without the worker ends; `ticket` holds
    /// back the writes to the original it reads.
    fn image_read_end(&self, ticket: Option<InFlightTicket>) -> DirectRead {
        DirectRead { error: self.error.clone(), filter: self.tracker.id(), orig: self.orig.clone(), _ticket: ticket }
    }

    /// Whether data read from the original for the image, now that the read
    /// is over, is the original at the take: writes to it pass uncopied
    /// once the snapshot is broken or the filter is detached.
    fn original_intact(error: &AtomicI32, filter: FilterId, orig: &BlockDevice) -> bool {
        error.load(Ordering::Acquire) == 0 && filter.is_attached_to(orig)
    }

    /// Read or write the image: returns the bio's result.
    fn image_io(self: &Arc<Self>, bio: &mut DiskBio) -> Result {
        if self.error() != 0 {
            return Err(EIO);
        }
        if !self.tracker.is_attached_to(self.orig.bdev()) {
            // Writes to the original no longer reach us: the image is stale.
            self.fail(ENODEV);
            return Err(EIO);
        }
        let op = bio.op();
        let (sector, count) = bio.sectors();
        if sector.checked_add(count).map_or(true, |end| end > self.geometry.capacity) {
            return Err(EIO);
        }
        let start = sector << SECTOR_SHIFT;
        let result = match op {
            DiskOp::Read => self.image_read(bio, start).and_then(|()| {
                if Self::original_intact(&self.error, self.tracker.id(), self.orig.bdev()) {
                    Ok(())
                } else {
                    Err(EIO)
                }
            }),
            DiskOp::Write => {
                let mut state = self.state.lock();
                let r = bio.for_each_piece(|offset, data| {
                    for part in self.geometry.parts(start + offset as u64, data.len()) {
                        self.image_write(&mut state, part.chunk, part.offset, &data[part.bytes])?;
                    }
                    Ok(())
                });
                drop(state);
                if r.is_ok() {
                    self.tracker.mark_dirty(sector, count);
                }
                r
            }
            DiskOp::Flush => Ok(()),
            DiskOp::Other => Err(crate::kapi::errno::eopnotsupp()),
        };
        self.throttle(0);
        if let Err(e) = result {
            if op == DiskOp::Write || e != EIO {
                // A failed image write loses data of the image.
                self.fail(e);
            }
            return Err(EIO);
        }
        Ok(())
    }

    /// Read the image: each chunk's part from where its old contents are.
    /// Only memory is read under the lock: a stored chunk stays where it is
    /// (an image write stores it again in the same place, and changes only
    /// what it wrote), and a part of the original is read with a ticket of
    /// `original_reads`, which holds back the writes to it once it is
    /// preserved (or, when none is to be had, under the lock, which keeps it
    /// from being preserved meanwhile).
    fn image_read(&self, bio: &mut DiskBio, start: u64) -> Result {
        for part in self.geometry.parts(start, bio.len()) {
            // Entered before looking, as in `read_direct`.
            let ticket = self.original_reads.try_enter();
            let mut state = self.state.lock();
            self.wait_stored(&mut state, part.chunk);
            let stored_at = match state.place(part.chunk) {
                Place::Memory(buf) => {
                    let base = part.bytes.start;
                    bio.for_each_piece_in(part.bytes, |offset, data| buf.read_at(part.offset + offset - base, data))?;
                    continue;
                }
                Place::Storage(at) => Some(at),
                Place::Original => None,
            };
            match stored_at {
                Some(at) => {
                    drop(state);
                    drop(ticket);
                    self.storage.read_part(bio, part.bytes, at, part.offset)?
                }
                None => {
                    let _locked = ticket.is_none().then_some(state);
                    bio.read_part_from(self.orig.bdev(), part.bytes)?
                }
            }
        }
        Ok(())
    }

    /// Chunk `index`'s old contents from the storage (at `stored_at`) or, if
    /// it was never preserved, from the original.
    fn load(&self, index: u64, stored_at: Option<u64>) -> Result<ChunkBuf> {
        let (start, sectors) = self.geometry.chunk_sectors(index);
        let mut buf = ChunkBuf::new((sectors << SECTOR_SHIFT) as usize, Alloc::MayWait)?;
        match stored_at {
            Some(at) => self.storage.read(&mut buf, at)?,
            None => buf.read_from_bdev(self.orig.bdev(), start)?,
        }
        Ok(buf)
    }

    /// Write `data` at `offset` of chunk `index` of the image.
    fn image_write(self: &Arc<Self>, state: &mut StateGuard<'_>, index: u64, offset: usize, data: &[u8]) -> Result {
        self.wait_stored(state, index);
        if let Some(Held { buf: Some(buf), .. }) = state.held.get_mut(&index) {
            buf.write_at(offset, data)?;
            return self.queue_store(state, index);
        }
        let stored_at = state.stored_at.get(index);
        let mut buf = self.load(index, stored_at)?;
        buf.write_at(offset, data)?;
        if stored_at.is_some() {
            self.hold(state, index, buf)
        } else {
            self.keep_preserved(state, index, buf)
        }
    }
}

/// The targets of a read sent straight on: the original, the storage
/// device.
const ORIGINAL: usize = 0;
const STORAGE: usize = 1;

/// An image read sent straight to the original or the storage. One of the
/// original holds back the writes that would change what it reads until it
/// is over.
struct DirectRead {
    error: Arc<AtomicI32>,
    filter: FilterId,
    orig: Arc<BdevFile>,
    _ticket: Option<InFlightTicket>,
}

impl ReadEnd for DirectRead {
    fn result(&self, read: Result) -> Result {
        read?;
        // The snapshot broke while the read was in flight: a write may have
        // changed the data it read.
        if DiffArea::original_intact(&self.error, self.filter, self.orig.bdev()) {
            Ok(())
        } else {
            Err(EIO)
        }
    }
}

impl DiskHandler for DiffArea {
    fn submit_bio(this: &Arc<Self>, bio: DiskBio) {
        if this.error() != 0 {
            bio.end(Err(EIO));
            return;
        }
        let Some(bio) = this.read_direct(bio) else {
            return;
        };
        // The caller is submitting I/O: no waiting for memory. Without it,
        // the bio waits its turn in the queue of the one shared worker.
        match KBox::<ImageIo>::new_uninit(GFP_NOWAIT) {
            Ok(slot) => {
                let Ok(io) = slot.write_pin_init(pin_init!(ImageIo {
                    area: this.clone(),
                    bio: Cell::new(Some(bio)),
                    work <- new_work!("ImageIo::work"),
                }));
                crate::enqueue::<_, 0>(io);
            }
            Err(_) => {
                this.image_bios.lock().push(bio);
                crate::enqueue::<_, IMAGE_WORK>(this.clone());
            }
        }
    }
}
