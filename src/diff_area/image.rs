// SPDX-License-Identifier: GPL-2.0
//! The I/O of the snapshot image: reads of chunks nobody changed go
//! straight to the original, the rest (and writes) to a worker that takes
//! each chunk's part from memory, the storage or the original.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicI32, Ordering};
use kernel::{prelude::*, sync::Arc, workqueue::WorkItem};

use super::{Chunk, DiffArea, StateGuard, IMAGE_WORK};
use crate::kapi::{
    bdev::BlockDevice,
    bio::{DiskBio, DiskOp, ReadEnd},
    blkfilter::FilterId,
    buffer::ChunkBuf,
    disk::DiskHandler,
    inflight::InFlightTicket,
    task::NoIo,
};
use crate::math::cbt::SECTOR_SHIFT;

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

    /// Send an image read of chunks that are not preserved straight to the
    /// original, without waiting; gives back any other bio, and a read the
    /// worker must do.
    fn read_unchanged(&self, bio: DiskBio) -> Option<DiskBio> {
        if bio.op() != DiskOp::Read {
            return Some(bio);
        }
        let (sector, count) = bio.sectors();
        if sector.checked_add(count).map_or(true, |end| end > self.geometry.capacity)
            || !self.tracker.is_attached_to(self.orig.bdev())
        {
            return Some(bio);
        }
        // Entered before looking: a chunk preserved after this look becomes
        // writable only once the read is over (`preserve_for`).
        let Some(ticket) = self.original_reads.try_enter() else {
            return Some(bio);
        };
        if !self.geometry.chunks(sector, count).all(|c| !self.preserved.get(c)) {
            return Some(bio);
        }
        let read = OriginalRead {
            error: self.error.clone(),
            filter: self.tracker.id(),
            _ticket: ticket,
        };
        bio.read_async_from(&self.orig, read).err().map(|(bio, _)| bio)
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
        let mut state = self.state.lock();
        let result = match op {
            DiskOp::Read => self.image_read(&mut state, bio, start).and_then(|()| {
                if Self::original_intact(&self.error, self.tracker.id(), self.orig.bdev()) {
                    Ok(())
                } else {
                    Err(EIO)
                }
            }),
            DiskOp::Write => {
                let r = bio.for_each_piece(|offset, data| {
                    for part in self.geometry.parts(start + offset as u64, data.len()) {
                        self.image_write(&mut state, part.chunk, part.offset, &data[part.bytes])?;
                    }
                    Ok(())
                });
                if r.is_ok() {
                    self.tracker.mark_dirty(sector, count);
                }
                r
            }
            DiskOp::Flush => Ok(()),
            DiskOp::Other => Err(crate::kapi::errno::eopnotsupp()),
        };
        drop(state);
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
    /// The lock keeps chunks that are not preserved from being copied (and
    /// so written) meanwhile.
    fn image_read(&self, state: &mut StateGuard<'_>, bio: &mut DiskBio, start: u64) -> Result {
        for part in self.geometry.parts(start, bio.len()) {
            self.wait_stored(state, part.chunk);
            match state.chunks.get(&part.chunk) {
                Some(Chunk { buf: Some(buf), .. }) => {
                    let base = part.bytes.start;
                    bio.for_each_piece_in(part.bytes, |offset, data| buf.read_at(part.offset + offset - base, data))?
                }
                Some(Chunk { stored_at: Some(at), .. }) => {
                    self.storage.read_part(bio, part.bytes, *at, part.offset)?
                }
                _ => bio.read_part_from(self.orig.bdev(), part.bytes)?,
            }
        }
        Ok(())
    }

    /// Chunk `index`'s old contents from the storage (at `stored_at`) or, if
    /// it was never preserved, from the original.
    fn load(&self, index: u64, stored_at: Option<u64>) -> Result<ChunkBuf> {
        let (start, sectors) = self.geometry.chunk_sectors(index);
        let mut buf = ChunkBuf::new((sectors << SECTOR_SHIFT) as usize, GFP_KERNEL)?;
        match stored_at {
            Some(at) => self.storage.read(&mut buf, at)?,
            None => buf.read_from_bdev(self.orig.bdev(), start)?,
        }
        Ok(buf)
    }

    /// Write `data` at `offset` of chunk `index` of the image.
    fn image_write(
        self: &Arc<Self>,
        state: &mut StateGuard<'_>,
        index: u64,
        offset: usize,
        data: &[u8],
    ) -> Result {
        self.wait_stored(state, index);
        if state.chunks.get(&index).is_none() {
            let buf = self.load(index, None)?;
            self.keep_preserved(state, index, buf)?;
        }
        let chunk = state.chunks.get_mut(&index).ok_or(EINVAL)?;
        if chunk.buf.is_none() {
            chunk.buf = Some(self.load(index, chunk.stored_at)?);
        }
        if let Some(buf) = chunk.buf.as_mut() {
            buf.write_at(offset, data)?;
        }
        self.queue_store(state, index)
    }
}

/// An image read sent straight to the original: it holds back the writes
/// that would change what it reads until it is over.
struct OriginalRead {
    error: Arc<AtomicI32>,
    filter: FilterId,
    _ticket: InFlightTicket,
}

impl ReadEnd for OriginalRead {
    fn result(&self, orig: &BlockDevice, read: Result) -> Result {
        read?;
        // The snapshot broke while the read was in flight: a write may have
        // changed the data it read.
        if DiffArea::original_intact(&self.error, self.filter, orig) {
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
        if let Some(bio) = this.read_unchanged(bio) {
            this.image_bios.lock().push(bio);
            crate::enqueue::<_, IMAGE_WORK>(this.clone());
        }
    }
}
