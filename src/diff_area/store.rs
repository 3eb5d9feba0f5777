// SPDX-License-Identifier: GPL-2.0
//! The chunks' way to the difference storage: preserved chunks wait in
//! memory until a worker (or a throttled writer) writes them there.
#![forbid(unsafe_code)]

use kernel::{prelude::*, rbtree::RBTreeNode, sync::Arc, workqueue::WorkItem};

use super::{AreaState, Chunk, DiffArea, StateGuard, STORE_WORK};
use crate::kapi::{buffer::ChunkBuf, task::NoIo};
use crate::math::cbt::SECTOR_SHIFT;

impl WorkItem<STORE_WORK> for DiffArea {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let _noio = NoIo::enter();
        while this.store_one() {}
    }
}

impl DiffArea {
    /// Keep `buf` as the old contents of chunk `index`, unless it has some.
    pub(super) fn keep_preserved(self: &Arc<Self>, state: &mut AreaState, index: u64, buf: ChunkBuf) -> Result {
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
    pub(super) fn queue_store(self: &Arc<Self>, state: &mut AreaState, index: u64) -> Result {
        if state.to_store.get(&index).is_none() {
            state.to_store.insert(RBTreeNode::new(index, (), GFP_KERNEL)?);
        }
        crate::enqueue::<_, STORE_WORK>(self.clone());
        Ok(())
    }

    /// While more than `chunk_maximum_in_queue` less `reserve` chunks wait in
    /// memory, store some now: this throttles the writers (and image
    /// writes).
    pub(super) fn throttle(&self, reserve: usize) {
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
    pub(super) fn wait_stored(&self, state: &mut StateGuard<'_>, index: u64) {
        while state.chunks.get(&index).is_some_and(|c| c.storing) {
            self.stored.wait(state);
        }
    }
}
