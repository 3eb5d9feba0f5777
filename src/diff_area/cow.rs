// SPDX-License-Identifier: GPL-2.0
//! Copy-on-write: writes to chunks that are not writable yet are held, and
//! a worker copies their chunks from the original, in batches read in
//! parallel, before it lets them go on.
#![forbid(unsafe_code)]

use kernel::{prelude::*, sync::Arc, workqueue::WorkItem};

use super::{DiffArea, COW_WORK};
use crate::kapi::{
    bio::{BioQueue, FilteredBio},
    buffer::{read_all_from_bdev, ChunkBuf},
    task::NoIo,
};
use crate::math::cbt::SECTOR_SHIFT;

/// Held writes taken at once by the copy-on-write worker, and chunks read
/// from the original at once.
const COW_BATCH: usize = 16;

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
        self.held_writes.lock().push(bio);
        crate::enqueue::<_, COW_WORK>(self.clone());
        None
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
}
