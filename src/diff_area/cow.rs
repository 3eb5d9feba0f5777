// SPDX-License-Identifier: GPL-2.0
//! Copy-on-write: writes to chunks that are not writable yet are held, and
//! a worker reads their chunks from the original, in batches read in
//! parallel, before it lets them go on. Up to `COW_IN_FLIGHT` batches are
//! read at once: a write does not wait for the copies of the writes that
//! came before it.
#![forbid(unsafe_code)]

use core::{cell::Cell, sync::atomic::Ordering};
use kernel::{
    init::InPlaceWrite,
    prelude::*,
    sync::Arc,
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use super::{DiffArea, COW_WORK};
use crate::kapi::{
    bio::{BioQueue, FilteredBio},
    buffer::{read_all_from_bdev, read_all_from_bdev_async, Alloc, ChunkBuf, ReadsEnd},
    inflight::InFlightTicket,
    task::{plugged, NoIo},
};
use crate::math::cbt::SECTOR_SHIFT;

/// Held writes taken at once by the copy-on-write worker, and chunks read
/// from the original at once.
const COW_BATCH: usize = 16;

/// Batches whose chunks are being read at once, per device.
const COW_IN_FLIGHT: usize = 4;

type Writes = [Option<FilteredBio>; COW_BATCH];
type Copies = [Option<(u64, ChunkBuf)>; COW_BATCH];

impl WorkItem<COW_WORK> for DiffArea {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let _noio = NoIo::enter();
        loop {
            let batch = this.cow_batch.lock();
            let mut writes: Writes = Default::default();
            {
                let mut held = this.held_writes.lock();
                for slot in writes.iter_mut() {
                    *slot = held.pop();
                }
            }
            if writes[0].is_none() {
                break;
            }
            if let Err(writes) = this.copy_async(writes, Alloc::MayWait) {
                this.preserve_for(&writes);
                // Dropping the bios sends them on to the device.
                plugged(|| drop(writes));
            }
            drop(batch);
            this.throttle(0);
        }
    }
}

/// Held writes and the chunks being read for them, in flight.
#[pin_data]
struct CowCopy {
    area: Arc<DiffArea>,
    writes: Cell<Writes>,
    chunks: Cell<Copies>,
    /// What the reads ended with.
    read: Cell<Result>,
    _in_flight: InFlightTicket,
    #[pin]
    work: Work<CowCopy>,
}

impl_has_work! {
    impl HasWork<Self> for CowCopy { self.work }
}

impl ReadsEnd for CowCopy {
    fn buffers(&self, mut add: impl FnMut(&mut ChunkBuf, u64) -> Result) -> Result {
        // Moving the buffers out and back leaves their pages where they are.
        let mut chunks = self.chunks.take();
        let added = chunks
            .iter_mut()
            .flatten()
            .try_for_each(|(index, buf)| add(buf, self.area.geometry.chunk_sectors(*index).0));
        self.chunks.set(chunks);
        added
    }

    fn ended(this: Pin<KBox<Self>>, result: Result) {
        this.read.set(result);
        crate::enqueue::<_, 0>(this);
    }
}

impl WorkItem for CowCopy {
    type Pointer = Pin<KBox<Self>>;

    fn run(this: Pin<KBox<Self>>) {
        let _noio = NoIo::enter();
        let area = &this.area;
        let mut chunks = this.chunks.take();
        let n = chunks.iter().flatten().count();
        if let Err(e) = this.read.get().and_then(|()| area.keep_copies(&mut chunks)) {
            area.fail(e);
        }
        area.in_memory.reading.fetch_sub(n, Ordering::Relaxed);
        let writes = this.writes.take();
        area.make_writable(&writes);
        // Sent on to the device, before the batch leaves the ones in flight.
        plugged(|| drop(writes));
    }
}

impl DiffArea {
    /// A write to the original is about to start: let it go if the chunks it
    /// touches are writable (or the snapshot is broken); otherwise hold it
    /// until they are.
    pub(crate) fn filter_write(self: &Arc<Self>, bio: FilteredBio) -> Option<FilteredBio> {
        if !bio.changes_data() || self.error() != 0 {
            return Some(bio);
        }
        let (sector, count) = bio.sectors();
        if self.geometry.chunks(sector, count).all(|c| self.writable.get(c)) {
            return Some(bio);
        }
        if bio.nowait() {
            bio.fail(EAGAIN);
            return None;
        }
        // Start the copy here: a worker would have to wake up first.
        let mut writes: Writes = Default::default();
        writes[0] = Some(bio);
        if let Err(writes) = self.copy_async(writes, Alloc::NoWait) {
            let mut held = self.held_writes.lock();
            for bio in writes.into_iter().flatten() {
                held.push(bio);
            }
            drop(held);
            crate::enqueue::<_, COW_WORK>(self.clone());
        }
        None
    }

    /// Copy the chunks of `writes` without waiting, if there are few enough
    /// of them and room for another batch in flight: a worker lets the
    /// writes go on when the copies are kept. Gives back the writes
    /// otherwise. A task submitting I/O itself (`Alloc::NoWait`) waits for
    /// nothing: neither memory nor image reads.
    fn copy_async(self: &Arc<Self>, writes: Writes, alloc: Alloc) -> Result<(), Writes> {
        if self.error() != 0 || self.copies.count() >= COW_IN_FLIGHT {
            return Err(writes);
        }
        let mut chunks: Copies = Default::default();
        let one_batch = {
            let mut pending = Self::chunks_of(&self.geometry, &writes);
            let n = self.next_copies(&mut pending, &mut chunks, COW_BATCH.min(self.in_memory.max), alloc);
            n.ok().filter(|_| pending.next().is_none())
        };
        // More chunks than a batch: copied by the worker, batch after batch.
        let Some(n) = one_batch else {
            return Err(writes);
        };
        if n == 0 {
            // Preserved meanwhile: the worker waits for the image reads.
            if alloc == Alloc::NoWait {
                return Err(writes);
            }
            self.make_writable(&writes);
            return Ok(());
        }
        let Ok(slot) = KBox::<CowCopy>::new_uninit(alloc.flags()) else {
            return Err(writes);
        };
        let Some(ticket) = self.copies.try_enter() else {
            return Err(writes);
        };
        // What would pass the memory limit is left to the worker's copy
        // here and now, which stores first.
        if !self.in_memory.start_reading(n) {
            return Err(writes);
        }
        let copy = slot.write_pin_init(pin_init!(CowCopy {
            area: self.clone(),
            writes: Cell::new(writes),
            chunks: Cell::new(chunks),
            read: Cell::new(Ok(())),
            _in_flight: ticket,
            work <- new_work!("CowCopy::work"),
        }));
        let Ok(copy) = copy;
        read_all_from_bdev_async(&self.orig, copy, alloc).map_err(|copy| {
            self.in_memory.reading.fetch_sub(n, Ordering::Relaxed);
            copy.writes.take()
        })
    }

    /// The chunks `writes` touch, in order (a chunk may come more than once).
    fn chunks_of<'a>(
        geometry: &'a crate::math::chunk::ChunkGeometry,
        writes: &'a [Option<FilteredBio>],
    ) -> impl Iterator<Item = u64> + 'a {
        writes.iter().flatten().flat_map(|bio| {
            let (sector, count) = bio.sectors();
            geometry.chunks(sector, count)
        })
    }

    /// Take from `pending` the next chunks not preserved yet, each once, up
    /// to `max`, with a buffer each: how many.
    fn next_copies(
        &self,
        pending: &mut impl Iterator<Item = u64>,
        batch: &mut Copies,
        max: usize,
        alloc: Alloc,
    ) -> Result<usize> {
        let mut n = 0;
        for index in pending.by_ref() {
            if self.preserved.get(index) || batch[..n].iter().flatten().any(|(i, _)| *i == index) {
                continue;
            }
            let (_, sectors) = self.geometry.chunk_sectors(index);
            batch[n] = Some((index, ChunkBuf::new((sectors << SECTOR_SHIFT) as usize, alloc)?));
            n += 1;
            if n == max {
                break;
            }
        }
        Ok(n)
    }

    /// Make every chunk the writes touch writable; on failure the snapshot
    /// breaks and the writes go on regardless. Either way, image reads of
    /// the old contents on the original are over when this returns.
    fn preserve_for(self: &Arc<Self>, writes: &Writes) {
        // A discard may cover the whole device: read no more chunks than the
        // memory allows at a time, whatever the writes.
        let batch_len = COW_BATCH.min(self.in_memory.max);
        let mut pending = Self::chunks_of(&self.geometry, writes);
        while self.error() == 0 {
            self.throttle(batch_len);
            let mut batch: Copies = Default::default();
            match self.next_copies(&mut pending, &mut batch, batch_len, Alloc::MayWait) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = self.copy_chunks(&mut batch[..n]) {
                        self.fail(e);
                    }
                }
                Err(e) => self.fail(e),
            }
        }
        self.make_writable(writes);
    }

    /// The chunks of `writes` are preserved (or the snapshot broke): once
    /// the image reads that found them on the original are over, let
    /// writes change them.
    fn make_writable(&self, writes: &[Option<FilteredBio>]) {
        // Reads that found these chunks not preserved have them on the
        // original: they must be over before a write changes them. Reads
        // that start from now find them preserved.
        self.original_reads.wait_idle();
        for index in Self::chunks_of(&self.geometry, writes) {
            if self.preserved.get(index) {
                self.writable.set(index);
            }
        }
    }

    /// Read the old contents of the batch's chunks from the original, then
    /// keep them. The lock is not held while reading: writes to these chunks
    /// are held back, and a chunk an image write preserved meanwhile keeps
    /// that copy.
    fn copy_chunks(self: &Arc<Self>, batch: &mut [Option<(u64, ChunkBuf)>]) -> Result {
        let reads = batch.iter_mut().flatten().map(|(index, buf)| (buf, self.geometry.chunk_sectors(*index).0));
        read_all_from_bdev(self.orig.bdev(), reads)?;
        self.keep_copies(batch)
    }

    /// Keep the chunks read from the original, unless preserved meanwhile
    /// (by an image write, or by another batch: both read them while their
    /// writes were held).
    fn keep_copies(self: &Arc<Self>, batch: &mut [Option<(u64, ChunkBuf)>]) -> Result {
        let mut state = self.state.lock();
        for (index, buf) in batch.iter_mut().filter_map(Option::take) {
            self.keep_preserved(&mut state, index, buf)?;
        }
        Ok(())
    }

    /// The snapshot is being destroyed and copy-on-write into this area has
    /// stopped: send on the writes it still holds, without copying, and
    /// wait for the image reads sent straight to the original.
    pub(crate) fn drain(&self) {
        loop {
            // Not under the lock: their ends run on the workqueue, where the
            // worker may wait for the lock.
            self.copies.wait_idle();
            // The worker has no writes in hand meanwhile.
            let _batch = self.cow_batch.lock();
            if self.copies.count() == 0 {
                let held = core::mem::replace(&mut *self.held_writes.lock(), BioQueue::new());
                // Dropping the queue sends its bios on, outside the spinlock.
                drop(held);
                break;
            }
        }
        self.original_reads.wait_idle();
    }
}
