// SPDX-License-Identifier: GPL-2.0
//! The difference area of one device in a taken snapshot: which chunks have
//! been preserved, where their old contents are (in memory or in the
//! difference storage), the copy-on-write of the original's writes, and the
//! I/O of the snapshot image.
//!
//! Writes to chunks not yet preserved are held back and handed to a worker,
//! which reads the old chunk from the original into memory and only then lets
//! the write go on; another worker moves chunks from memory to the storage.
//! Writes to preserved chunks pass straight through.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use kernel::{
    new_mutex, new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    sync::{Arc, Mutex, SpinLock},
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use crate::{
    diff_storage::DiffStorage,
    event_queue::{EventKind, EventQueue},
    kapi::{
        bdev::BdevFile,
        bio::{BioQueue, DiskBio, DiskOp, FilteredBio},
        blkfilter::FilterRef,
        buffer::ChunkBuf,
        disk::DiskHandler,
        noio::NoIo,
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
}

struct AreaState {
    chunks: RBTree<u64, Chunk>,
    /// Chunks whose memory must be written to the storage.
    to_store: RBTree<u64, ()>,
}

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
    /// Bit per chunk: its old contents are preserved. Read without a lock by
    /// the write path; set under `state` once the copy is complete.
    preserved: KVVec<AtomicU64>,
    /// 0, or the negative errno that broke the snapshot of this device.
    error: AtomicI32,
    // Held across chunk I/O: copy-on-write, image I/O and storing of one
    // device are serialised.
    #[pin]
    state: Mutex<AreaState>,
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
        while let Some(bio) = this.pop_held_write() {
            this.preserve_for(&bio);
            // Dropping the bio sends it on to the device.
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
        loop {
            let mut state = this.state.lock();
            if !this.store_one(&mut state) {
                break;
            }
        }
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
        let words = usize::try_from(geometry.count.div_ceil(64)).map_err(|_| EFBIG)?;
        let mut preserved = KVVec::with_capacity(words, GFP_KERNEL)?;
        for _ in 0..words {
            preserved.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(Self {
                tracker,
                orig,
                geometry,
                storage,
                events,
                max_in_memory,
                preserved,
                error: AtomicI32::new(0),
                state <- new_mutex!(AreaState { chunks: RBTree::new(), to_store: RBTree::new() }),
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

    fn is_preserved(&self, chunk: u64) -> bool {
        let word = &self.preserved[(chunk / 64) as usize];
        word.load(Ordering::Acquire) & (1 << (chunk % 64)) != 0
    }

    fn mark_preserved(&self, chunk: u64) {
        self.preserved[(chunk / 64) as usize].fetch_or(1 << (chunk % 64), Ordering::Release);
    }

    /// A write to the original is about to start: let it go if the chunks it
    /// touches are preserved (or the snapshot is broken); otherwise hold it
    /// until they are.
    pub(crate) fn filter_write(self: &Arc<Self>, bio: FilteredBio) -> Option<FilteredBio> {
        if !bio.changes_data() || self.error() != 0 {
            return Some(bio);
        }
        let (sector, count) = bio.sectors();
        if self.geometry.chunks(sector, count).all(|c| self.is_preserved(c)) {
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

    fn pop_held_write(&self) -> Option<FilteredBio> {
        self.held_writes.lock().pop()
    }

    fn pop_image_bio(&self) -> Option<DiskBio> {
        self.image_bios.lock().pop()
    }

    /// Preserve every chunk `bio` touches; on failure the snapshot breaks and
    /// the write goes on regardless.
    fn preserve_for(self: &Arc<Self>, bio: &FilteredBio) {
        let (sector, count) = bio.sectors();
        for chunk in self.geometry.chunks(sector, count) {
            if self.error() != 0 {
                return;
            }
            if self.is_preserved(chunk) {
                continue;
            }
            let mut state = self.state.lock();
            if let Err(e) = self.preserve(&mut state, chunk) {
                self.fail(e);
            }
        }
    }

    /// Copy chunk `index` of the original into memory unless it is preserved
    /// already; returns it.
    fn preserve<'a>(self: &Arc<Self>, state: &'a mut AreaState, index: u64) -> Result<&'a mut Chunk> {
        if state.chunks.get(&index).is_none() {
            let (start, sectors) = self.geometry.chunk_sectors(index);
            let mut buf = ChunkBuf::new((sectors << SECTOR_SHIFT) as usize, GFP_KERNEL)?;
            buf.read_from_bdev(self.orig.bdev(), start)?;
            let node = RBTreeNode::new(
                index,
                Chunk {
                    buf: Some(buf),
                    stored_at: None,
                },
                GFP_KERNEL,
            )?;
            state.chunks.insert(node);
            self.mark_preserved(index);
            self.queue_store(state, index)?;
        }
        state.chunks.get_mut(&index).ok_or(EINVAL)
    }

    /// Queue chunk `index` (in memory) to be stored. When too many chunks wait
    /// in memory, store some now: this throttles the writers.
    fn queue_store(self: &Arc<Self>, state: &mut AreaState, index: u64) -> Result {
        if state.to_store.get(&index).is_none() {
            state.to_store.insert(RBTreeNode::new(index, (), GFP_KERNEL)?);
        }
        while state.to_store.iter().count() > self.max_in_memory {
            if !self.store_one(state) {
                break;
            }
        }
        crate::enqueue::<_, STORE_WORK>(self.clone());
        Ok(())
    }

    /// Write the first chunk waiting in memory to the storage and free its
    /// memory; false when none waits (or the snapshot is broken).
    fn store_one(&self, state: &mut AreaState) -> bool {
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
        let Some(buf) = chunk.buf.take() else {
            return true;
        };
        let stored = match chunk.stored_at {
            Some(at) => Ok(at),
            None => self.storage.alloc((buf.len() >> SECTOR_SHIFT) as u64),
        }
        .and_then(|at| self.storage.write(&buf, at).map(|()| at));
        match stored {
            Ok(at) => chunk.stored_at = Some(at),
            Err(e) => {
                chunk.buf = Some(buf);
                self.fail(e);
            }
        }
        true
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
            // Nothing of it changed yet: straight from the original, while
            // the lock keeps its chunks from being copied (and so written).
            DiskOp::Read if self.geometry.chunks(sector, count).all(|c| !self.is_preserved(c)) => {
                bio.read_from(self.orig.bdev())
            }
            DiskOp::Read => {
                // The chunk last read from the original.
                let mut cached: Option<(u64, ChunkBuf)> = None;
                bio.for_each_piece(|offset, data| {
                    for part in self.geometry.parts(start + offset as u64, data.len()) {
                        let out = &mut data[part.bytes.clone()];
                        match state.chunks.get(&part.chunk) {
                            Some(Chunk { buf: Some(buf), .. }) => buf.read_at(part.offset, out)?,
                            Some(Chunk { stored_at: Some(at), .. }) => {
                                self.storage.read_part(out, *at, part.offset)?
                            }
                            _ => {
                                if cached.as_ref().map(|(i, _)| *i) != Some(part.chunk) {
                                    cached = Some((part.chunk, self.load(part.chunk, None)?));
                                }
                                if let Some((_, buf)) = &cached {
                                    buf.read_at(part.offset, out)?;
                                }
                            }
                        }
                    }
                    Ok(())
                })
            }
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
        if let Err(e) = result {
            if op == DiskOp::Write || e != EIO {
                // A failed image write loses data of the image.
                self.fail(e);
            }
            return Err(EIO);
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
        state: &mut AreaState,
        index: u64,
        offset: usize,
        data: &[u8],
    ) -> Result {
        let chunk = self.preserve(state, index)?;
        if chunk.buf.is_none() {
            chunk.buf = Some(self.load(index, chunk.stored_at)?);
        }
        if let Some(buf) = chunk.buf.as_mut() {
            buf.write_at(offset, data)?;
        }
        self.queue_store(state, index)
    }
}

impl DiskHandler for DiffArea {
    fn submit_bio(this: &Arc<Self>, bio: DiskBio) {
        if this.error() != 0 {
            bio.end(Err(EIO));
            return;
        }
        this.image_bios.lock().push(bio);
        crate::enqueue::<_, IMAGE_WORK>(this.clone());
    }
}
