// SPDX-License-Identifier: GPL-2.0
//! The difference area of one device in a taken snapshot: which chunks have
//! been preserved and where their old contents are (in memory or in the
//! difference storage). Its paths live apart: copy-on-write of the
//! original's writes (`cow`), the chunks' way to the storage (`store`) and
//! the I/O of the snapshot image (`image`).
//!
//! A chunk is first preserved (image reads no longer go to the original for
//! it), then, once the image reads sent to the original before that are
//! over, writable: writes to it pass straight through, and can no longer
//! change what such a read returns.
#![forbid(unsafe_code)]

mod cow;
mod image;
mod store;

use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use kernel::{
    new_condvar, new_mutex, new_spinlock,
    prelude::*,
    rbtree::RBTree,
    sync::{
        lock::{mutex::MutexBackend, Guard},
        Arc, CondVar, Mutex, SpinLock,
    },
    workqueue::{impl_has_work, new_work, Work},
};

use crate::{
    diff_storage::DiffStorage,
    event_queue::{EventKind, EventQueue},
    kapi::{
        bdev::BdevFile,
        bio::{BioQueue, DiskBio, FilteredBio},
        blkfilter::FilterRef,
        buffer::ChunkBuf,
        inflight::InFlight,
    },
    math::{
        chunk::{ChunkGeometry, ChunkLimits},
        chunk_index::{self, ChunkIndex},
    },
    tracker::Tracker,
};

/// The old contents of a preserved chunk that is not (only) in the storage.
struct Held {
    /// In memory until stored (or while an image write changes it).
    buf: Option<ChunkBuf>,
    /// Being written to the storage, without the lock: the data is neither
    /// in `buf` nor stored yet.
    storing: bool,
}

/// Where the old contents of a chunk are.
enum Place<'a> {
    Memory(&'a ChunkBuf),
    /// From this storage sector on.
    Storage(u64),
    /// Not preserved: still on the original.
    Original,
}

struct AreaState {
    /// Preserved chunks in memory or being stored: about
    /// `chunk_maximum_in_queue` at most, whatever the size of the device.
    held: RBTree<u64, Held>,
    /// Where stored chunks are in the storage: 8 to 22 bytes a chunk.
    stored_at: ChunkIndex<KVVec<u64>>,
    /// Chunks whose memory must be written to the storage.
    to_store: RBTree<u64, ()>,
}

impl AreaState {
    fn new() -> Result<Self> {
        Ok(Self {
            held: RBTree::new(),
            stored_at: ChunkIndex::new(KVVec::from_elem(0, chunk_index::INITIAL_ENTRIES, GFP_KERNEL)?),
            to_store: RBTree::new(),
        })
    }

    /// Where chunk `index`'s old contents are; the caller waits for a store
    /// in progress first.
    fn place(&self, index: u64) -> Place<'_> {
        match self.held.get(&index) {
            Some(Held { buf: Some(buf), .. }) => Place::Memory(buf),
            _ => self.stored_at.get(index).map_or(Place::Original, Place::Storage),
        }
    }

    /// Index chunk `index` as stored at `sector`, growing the index if it
    /// must.
    fn index_stored(&mut self, index: u64, sector: u64) -> Result {
        if let Some(len) = self.stored_at.growth() {
            self.stored_at.grow(KVVec::from_elem(0, len, GFP_KERNEL)?);
        }
        self.stored_at.insert(index, sector).map_err(|_| EFBIG)
    }
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

/// Chunks in memory, counted apart from `AreaState`: copy-on-write in the
/// submit path reads them and must not wait for its lock, which is held
/// across image I/O to the original.
struct InMemory {
    /// `chunk_maximum_in_queue`: how many there may be, whatever the size of
    /// the device.
    max: usize,
    /// Chunks in `AreaState::held`.
    held: AtomicUsize,
    /// Chunks being read by the batches of copies in flight.
    reading: AtomicUsize,
}

impl InMemory {
    fn new(max: usize) -> Self {
        Self { max, held: AtomicUsize::new(0), reading: AtomicUsize::new(0) }
    }

    fn total(&self) -> usize {
        self.held.load(Ordering::Relaxed) + self.reading.load(Ordering::Relaxed)
    }

    /// Count `n` more chunks being read, if the total stays within `max`.
    fn start_reading(&self, n: usize) -> bool {
        let before = self.reading.fetch_add(n, Ordering::Relaxed);
        if before + n + self.held.load(Ordering::Relaxed) <= self.max {
            return true;
        }
        self.reading.fetch_sub(n, Ordering::Relaxed);
        false
    }
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
    in_memory: InMemory,
    /// Chunks whose old contents are in `state` (held or stored): image
    /// reads take them from there. Set under `state`.
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
    /// Batches of copies being read, with the writes they hold.
    #[pin]
    copies: InFlight,
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
        if geometry.count > chunk_index::MAX_CHUNKS {
            return Err(EFBIG);
        }
        let preserved = ChunkBits::new(geometry.count)?;
        let writable = ChunkBits::new(geometry.count)?;
        let error = Arc::new(AtomicI32::new(0), GFP_KERNEL)?;
        let state = AreaState::new()?;
        Arc::pin_init(
            pin_init!(Self {
                tracker,
                orig,
                geometry,
                storage,
                events,
                in_memory: InMemory::new(max_in_memory),
                preserved,
                writable,
                error,
                original_reads <- InFlight::new(),
                cow_batch <- new_mutex!(()),
                copies <- InFlight::new(),
                state <- new_mutex!(state),
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
            self.events.push(EventKind::Corrupted { dev_id, errno: -errno });
        }
    }
}
