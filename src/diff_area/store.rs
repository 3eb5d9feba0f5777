// SPDX-License-Identifier: GPL-2.0
//! The chunks' way to the difference storage: preserved chunks wait in
//! memory until a worker (or a throttled writer) writes them there.
#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;
use kernel::{page::PAGE_SIZE, prelude::*, rbtree::RBTreeNode, sync::Arc, workqueue::WorkItem};

use super::{AreaState, DiffArea, Held, StateGuard, STORE_WORK};
use crate::kapi::{buffer::ChunkBuf, task::NoIo};
use crate::math::{cbt::SECTOR_SHIFT, chunk_index::storage_sectors};

/// Chunks written to the storage in one I/O: 4 MiB with the default chunk
/// size, so that storing keeps up with first-touch writes.
const STORE_BATCH: usize = 16;

impl WorkItem<STORE_WORK> for DiffArea {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let _noio = NoIo::enter();
        while this.store_some() {}
    }
}

impl DiffArea {
    /// Keep `buf` as the old contents of chunk `index`, unless it has some.
    pub(super) fn keep_preserved(self: &Arc<Self>, state: &mut AreaState, index: u64, buf: ChunkBuf) -> Result {
        if self.preserved.get(index) {
            return Ok(());
        }
        self.hold(state, index, buf)?;
        self.preserved.set(index);
        Ok(())
    }

    /// Keep `buf` in memory as chunk `index`'s old contents, and queue it
    /// to be stored.
    pub(super) fn hold(self: &Arc<Self>, state: &mut AreaState, index: u64, buf: ChunkBuf) -> Result {
        let held = Held { buf: Some(buf), storing: false };
        if state.held.insert(RBTreeNode::new(index, held, GFP_KERNEL)?).is_none() {
            self.in_memory.held.fetch_add(1, Ordering::Relaxed);
        }
        self.queue_store(state, index)
    }

    /// Queue chunk `index` (in memory) to be stored.
    pub(super) fn queue_store(self: &Arc<Self>, state: &mut AreaState, index: u64) -> Result {
        if state.to_store.get(&index).is_none() {
            state.to_store.insert(RBTreeNode::new(index, (), GFP_KERNEL)?);
        }
        crate::enqueue::<_, STORE_WORK>(self.clone());
        Ok(())
    }

    /// While more than `chunk_maximum_in_queue` less `reserve` chunks are in
    /// memory (being read, waiting, or in a batch being stored), store some
    /// now: this throttles the writers (and image writes).
    pub(super) fn throttle(self: &Arc<Self>, reserve: usize) {
        while self.in_memory.total() + reserve > self.in_memory.max {
            if !self.store_some() {
                break;
            }
        }
    }

    /// Write the first chunks waiting in memory to the storage, in one I/O,
    /// and free their memory; false when none waits (or the snapshot is
    /// broken). Chunks that have no place yet get neighbouring places, in
    /// the order of the device: a sequential read of the image is then one
    /// of the storage too.
    fn store_some(self: &Arc<Self>) -> bool {
        let mut batch: [Option<(u64, ChunkBuf)>; STORE_BATCH] = Default::default();
        let mut n = 0;
        // Where a chunk stored before goes back to (alone).
        let mut place = None;
        let mut state = self.state.lock();
        while n < STORE_BATCH && self.error() == 0 {
            let Some(index) = state.to_store.cursor_front().map(|c| *c.current().0) else {
                break;
            };
            let stored_at = state.stored_at.get(index);
            if stored_at.is_some() && n > 0 {
                break;
            }
            state.to_store.remove(&index);
            // A chunk being stored now is queued again only by an image
            // write, which waits for that store first.
            let Some(held) = state.held.get_mut(&index) else {
                continue;
            };
            let Some(buf) = held.buf.take() else {
                continue;
            };
            held.storing = true;
            // The next chunk would start inside the last page of this one.
            let ends_batch = stored_at.is_some() || buf.len() % PAGE_SIZE != 0;
            batch[n] = Some((index, buf));
            n += 1;
            place = stored_at;
            if ends_batch {
                break;
            }
        }
        drop(state);
        if n == 0 {
            return false;
        }

        let at = loop {
            let sectors =
                batch[..n].iter().flatten().map(|(_, buf)| storage_sectors((buf.len() >> SECTOR_SHIFT) as u64));
            match place.map_or_else(|| self.storage.alloc(sectors.sum()), Ok) {
                // Near its limit, the storage may still have room for one.
                Err(e) if e == ENOSPC && n > 1 => {
                    self.requeue(&mut batch[1..n]);
                    n = 1;
                }
                at => break at,
            }
        };
        let batch = &mut batch[..n];
        let stored = at.and_then(|at| self.storage.write(batch.iter().flatten().map(|(_, buf)| buf), at).map(|()| at));

        // Each chunk's place, one after the other from where the batch went.
        let mut state = self.state.lock();
        let mut at = stored;
        for (index, buf) in batch.iter_mut().filter_map(Option::take) {
            let indexed = at.and_then(|sector| state.index_stored(index, sector));
            at = at.map(|sector| sector + storage_sectors((buf.len() >> SECTOR_SHIFT) as u64));
            match indexed {
                // Image reads find it in the storage from now on.
                Ok(()) => {
                    if state.held.remove(&index).is_some() {
                        self.in_memory.held.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    if let Some(held) = state.held.get_mut(&index) {
                        held.storing = false;
                        held.buf = Some(buf);
                    }
                    self.fail(e);
                }
            }
        }
        drop(state);
        self.stored.notify_all();
        true
    }

    /// Give the chunks of `batch` back to memory, to be stored later.
    fn requeue(self: &Arc<Self>, batch: &mut [Option<(u64, ChunkBuf)>]) {
        let mut state = self.state.lock();
        for (index, buf) in batch.iter_mut().filter_map(Option::take) {
            if let Some(held) = state.held.get_mut(&index) {
                held.storing = false;
                held.buf = Some(buf);
            }
            if let Err(e) = self.queue_store(&mut state, index) {
                self.fail(e);
            }
        }
        drop(state);
        self.stored.notify_all();
    }

    /// Wait until chunk `index` is not being stored.
    pub(super) fn wait_stored(&self, state: &mut StateGuard<'_>, index: u64) {
        while state.held.get(&index).is_some_and(|c| c.storing) {
            self.stored.wait(state);
        }
    }
}
