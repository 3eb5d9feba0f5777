// SPDX-License-Identifier: GPL-2.0
//! The difference area of one device in a taken snapshot: which chunks have
//! been preserved, where their old contents are (in memory or in the
//! difference storage), the copy-on-write of the original's writes, and the
//! I/O of the snapshot image.
//!
//! Writes to chunks not yet preserved are held back and handed to a worker,
//! which reads the old chunks of a batch of them from the original into
//! memory, all reads in flight at once, and only then lets the writes go on;
//! another worker moves chunks from memory to the storage. Writes to
//! writable chunks pass straight through, and so do image reads of chunks
//! not preserved (to the original).
//!
//! A chunk is first preserved (image reads no longer go to the original for
//! it), then, once the image reads sent to the original before that are
//! over, writable: a write to it can no longer change what such a read
//! returns.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use kernel::{
    new_condvar, new_mutex, new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    sync::{
        lock::{mutex::MutexBackend, Guard},
        Arc, CondVar, Mutex, SpinLock,
    },
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use crate::{
    diff_storage::DiffStorage,
    event_queue::{EventKind, EventQueue},
    kapi::{
        bdev::BdevFile,
        bdev::BlockDevice,
        bio::{BioQueue, DiskBio, DiskOp, FilteredBio, ReadEnd},
        blkfilter::{FilterId, FilterRef},
        buffer::{read_all_from_bdev, ChunkBuf},
        disk::DiskHandler,
        inflight::{InFlight, InFlightTicket},
        task::NoIo,
    },
    math::{
        cbt::SECTOR_SHIFT,
        chunk::{ChunkGeometry, ChunkLimits},
    },
    tracker::Tracker,
};

/// The old contents of a preserved chunk.
struct Chunk {
    /// In memory until stored (or while an image write changes it).
    buf: Option<ChunkBuf>,
    /// First sector in the difference storage, once it has a place there.
    stored_at: Option<u64>,
    /// Being written to the storage, without the lock: the data is neither
    /// in `buf` nor stored yet.
    storing: bool,
}

struct AreaState {
    chunks: RBTree<u64, Chunk>,
    /// Chunks whose memory must be written to the storage.
    to_store: RBTree<u64, ()>,
}

type StateGuard<'a> = Guard<'a, AreaState, MutexBackend>;

/// A bit per chunk, read and set without a lock.
struct ChunkBits(KVVec<AtomicU64>);

impl ChunkBits {
    fn new(count: u64) -> Result<Self> {
        let words = usize::try_from(count.div_ceil(64)).map_err(|_| EFBIG)?;
        let mut bits = KVVec::with_capacity(words, GFP_KERNEL)?;
        for _ in 0..words {
            bits.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        Ok(Self(bits))
    }

    fn get(&self, chunk: u64) -> bool {
        self.0[(chunk / 64) as usize].load(Ordering::Acquire) & (1 << (chunk % 64)) != 0
    }

    fn set(&self, chunk: u64) {
        self.0[(chunk / 64) as usize].fetch_or(1 << (chunk % 64), Ordering::Release);
    }
}

/// Held writes taken at once by the copy-on-write worker, and chunks read
/// from the original at once.
const COW_BATCH: usize = 16;

/// Ids of the works of a difference area.
const COW_WORK: u64 = 0;
const IMAGE_WORK: u64 = 1;
const STORE_WORK: u64 = 2;

#[pin_data]
pub(crate) struct DiffArea {
    tracker: FilterRef<Tracker>,
    orig: Arc<BdevFile>,
    geometry: ChunkGeometry,
    storage: Arc<DiffStorage>,
    events: Arc<EventQueue>,
    max_in_memory: usize,
    /// Chunks whose old contents are in `state.chunks`: image reads take
    /// them from there. Set under `state`.
    preserved: ChunkBits,
    /// Preserved chunks that writes may change: no image read sent to the
    /// original before they were preserved is still in flight.
    writable: ChunkBits,
    /// 0, or the negative errno that broke the snapshot of this device.
    /// Shared with the image reads in flight on the original.
    error: Arc<AtomicI32>,
    /// Image reads sent straight to the original: a held write waits for
    /// them once its chunks are preserved.
    #[pin]
    original_reads: InFlight,
    /// Held by the copy-on-write worker while it has writes in hand.
    #[pin]
    cow_batch: Mutex<()>,
    // Held across image I/O (so copy-on-write waits for it), never across
    // copies from the original or writes to the storage.
    #[pin]
    state: Mutex<AreaState>,
    /// A chunk finished storing.
    #[pin]
    stored: CondVar,
    #[pin]
    held_writes: SpinLock<BioQueue<FilteredBio>>,
    #[pin]
    image_bios: SpinLock<BioQueue<DiskBio>>,
    #[pin]
    cow_work: Work<DiffArea, COW_WORK>,
    #[pin]
    image_work: Work<DiffArea, IMAGE_WORK>,
    #[pin]
    store_work: Work<DiffArea, STORE_WORK>,
}

impl_has_work! {
    impl HasWork<Self, COW_WORK> for DiffArea { self.cow_work }
    impl HasWork<Self, IMAGE_WORK> for DiffArea { self.image_work }
    impl HasWork<Self, STORE_WORK> for DiffArea { self.store_work }
}

impl WorkItem<COW_WORK> for DiffArea {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let _noio = NoIo::enter();
        loop {
            let batch = this.cow_batch.lock();
            let mut writes: [Option<FilteredBio>; COW_BATCH] = Default::default();
            {
                let mut held = this.held_writes.lock();
                for slot in writes.iter_mut() {
                    *slot = held.pop();
                }
            }
            if writes[0].is_none() {
                break;
            }
            this.preserve_for(&writes);
            // Dropping the bios sends them on to the device.
            drop(writes);
            drop(batch);
            this.throttle(0);
        }
    }
}

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

impl WorkItem<STORE_WORK> for DiffArea {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let _noio = NoIo::enter();
        while this.store_one() {}
    }
}

fn limits() -> (ChunkLimits, usize) {
    let p = crate::kapi::params::snapshot();
    (
        ChunkLimits {
            min_shift: p.chunk_minimum_shift,
            max_shift: p.chunk_maximum_shift,
            max_count_shift: p.chunk_maximum_count_shift,
        },
        p.chunk_maximum_in_queue.max(1) as usize,
    )
}

impl DiffArea {
    pub(crate) fn new(
        tracker: FilterRef<Tracker>,
        orig: Arc<BdevFile>,
        storage: Arc<DiffStorage>,
        events: Arc<EventQueue>,
    ) -> Result<Arc<Self>> {
        let bdev = orig.bdev();
        let (chunk_limits, max_in_memory) = limits();
        let geometry = ChunkGeometry::new(bdev.nr_sectors(), bdev.limits().io_min, &chunk_limits);
        let preserved = ChunkBits::new(geometry.count)?;
        let writable = ChunkBits::new(geometry.count)?;
        let error = Arc::new(AtomicI32::new(0), GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Self {
                tracker,
                orig,
                geometry,
                storage,
                events,
                max_in_memory,
                preserved,
                writable,
                error,
                original_reads <- InFlight::new(),
                cow_batch <- new_mutex!(()),
                state <- new_mutex!(AreaState { chunks: RBTree::new(), to_store: RBTree::new() }),
                stored <- new_condvar!("DiffArea::stored"),
                held_writes <- new_spinlock!(BioQueue::new()),
                image_bios <- new_spinlock!(BioQueue::new()),
                cow_work <- new_work!("DiffArea::cow_work"),
                image_work <- new_work!("DiffArea::image_work"),
                store_work <- new_work!("DiffArea::store_work"),
            }),
            GFP_KERNEL,
        )
    }

    /// 0, or the negative errno that broke this device's snapshot.
    pub(crate) fn error(&self) -> i32 {
        self.error.load(Ordering::Acquire)
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.geometry.capacity
    }

    /// Break this device's snapshot: its image fails from now on, writes to
    /// the original pass without copy, and user space gets an event.
    pub(crate) fn fail(&self, err: Error) {
        let errno = err.to_errno();
        if self.error.compare_exchange(0, errno, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let dev_id = self.tracker.dev_id();
            pr_err!("snapshot of {}:{} is corrupted: error {}\n", dev_id.0, dev_id.1, errno);
            self.events.push(EventKind::Corrupted { dev_id, errno });
        }
    }

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
        self.held_writes.lock().push(bio);
        crate::enqueue::<_, COW_WORK>(self.clone());
        None
    }

    fn pop_image_bio(&self) -> Option<DiskBio> {
        self.image_bios.lock().pop()
    }

    /// Make every chunk the writes touch writable; on failure the snapshot
    /// breaks and the writes go on regardless. Either way, image reads of
    /// the old contents on the original are over when this returns.
    fn preserve_for(self: &Arc<Self>, writes: &[Option<FilteredBio>]) {
        let chunks = || {
            writes.iter().flatten().flat_map(|bio| {
                let (sector, count) = bio.sectors();
                self.geometry.chunks(sector, count)
            })
        };
        // A discard may cover the whole device: read no more chunks than the
        // memory allows at a time, whatever the writes.
        let batch_len = COW_BATCH.min(self.max_in_memory);
        let mut pending = chunks();
        while self.error() == 0 {
            self.throttle(batch_len);
            // The next chunks not preserved yet, each once, read together.
            let mut batch: [Option<(u64, ChunkBuf)>; COW_BATCH] = Default::default();
            let mut n = 0;
            for index in pending.by_ref() {
                if self.preserved.get(index) || batch[..n].iter().flatten().any(|(i, _)| *i == index) {
                    continue;
                }
                let (_, sectors) = self.geometry.chunk_sectors(index);
                match ChunkBuf::new((sectors << SECTOR_SHIFT) as usize, GFP_KERNEL) {
                    Ok(buf) => batch[n] = Some((index, buf)),
                    Err(e) => {
                        self.fail(e);
                        break;
                    }
                }
                n += 1;
                if n == batch_len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
            if let Err(e) = self.copy_chunks(&mut batch[..n]) {
                self.fail(e);
            }
        }
        // Reads that found these chunks not preserved have them on the
        // original: they must be over before a write changes them. Reads
        // that start from now find them preserved.
        self.original_reads.wait_idle();
        for index in chunks() {
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
        let mut state = self.state.lock();
        for (index, buf) in batch.iter_mut().filter_map(Option::take) {
            self.keep_preserved(&mut state, index, buf)?;
        }
        Ok(())
    }

    /// Keep `buf` as the old contents of chunk `index`, unless it has some.
    fn keep_preserved(self: &Arc<Self>, state: &mut AreaState, index: u64, buf: ChunkBuf) -> Result {
        if state.chunks.get(&index).is_some() {
            return Ok(());
        }
        let chunk = Chunk {
            buf: Some(buf),
            stored_at: None,
            storing: false,
        };
        state.chunks.insert(RBTreeNode::new(index, chunk, GFP_KERNEL)?);
        self.preserved.set(index);
        self.queue_store(state, index)
    }

    /// Queue chunk `index` (in memory) to be stored.
    fn queue_store(self: &Arc<Self>, state: &mut AreaState, index: u64) -> Result {
        if state.to_store.get(&index).is_none() {
            state.to_store.insert(RBTreeNode::new(index, (), GFP_KERNEL)?);
        }
        crate::enqueue::<_, STORE_WORK>(self.clone());
        Ok(())
    }

    /// While more than `chunk_maximum_in_queue` less `reserve` chunks wait in
    /// memory, store some now: this throttles the writers (and image
    /// writes).
    fn throttle(&self, reserve: usize) {
        while self.state.lock().to_store.iter().count() + reserve > self.max_in_memory {
            if !self.store_one() {
                break;
            }
        }
    }

    /// Write the first chunk waiting in memory to the storage and free its
    /// memory; false when none waits (or the snapshot is broken).
    fn store_one(&self) -> bool {
        let mut state = self.state.lock();
        let Some(cursor) = state.to_store.cursor_front() else {
            return false;
        };
        let (_, node) = cursor.remove_current();
        let (index, ()) = node.to_key_value();
        if self.error() != 0 {
            return false;
        }
        let Some(chunk) = state.chunks.get_mut(&index) else {
            return true;
        };
        // A chunk being stored now is queued again only by an image
        // write, which waits for that store first.
        let Some(buf) = chunk.buf.take() else {
            return true;
        };
        let at = match chunk.stored_at {
            Some(at) => Ok(at),
            None => self.storage.alloc((buf.len() >> SECTOR_SHIFT) as u64),
        };
        chunk.storing = true;
        drop(state);

        let stored = at.and_then(|at| self.storage.write(&buf, at).map(|()| at));

        let mut state = self.state.lock();
        if let Some(chunk) = state.chunks.get_mut(&index) {
            chunk.storing = false;
            match stored {
                Ok(at) => chunk.stored_at = Some(at),
                Err(e) => {
                    chunk.buf = Some(buf);
                    self.fail(e);
                }
            }
        }
        drop(state);
        self.stored.notify_all();
        true
    }

    /// Wait until chunk `index` is not being stored.
    fn wait_stored(&self, state: &mut StateGuard<'_>, index: u64) {
        while state.chunks.get(&index).is_some_and(|c| c.storing) {
            self.stored.wait(state);
        }
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

    /// The snapshot is being destroyed and copy-on-write into this area has
    /// stopped: send on the writes it still holds, without copying, and
    /// wait for the image reads sent straight to the original.
    pub(crate) fn drain(&self) {
        // The worker has no writes in hand meanwhile.
        let _batch = self.cow_batch.lock();
        let held = core::mem::replace(&mut *self.held_writes.lock(), BioQueue::new());
        // Dropping the queue sends its bios on, outside the spinlock.
        drop(held);
        self.original_reads.wait_idle();
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
