// SPDX-License-Identifier: GPL-2.0
//! Bios (`struct bio`): the ones a filter takes over from a device, the ones
//! an image disk receives, and queues of them.

use core::{
    marker::PhantomData,
    ops::Range,
    ptr::NonNull,
    sync::atomic::{AtomicI32, AtomicUsize, Ordering},
};
use kernel::{bindings, prelude::*, sync::Arc};

pub(crate) use crate::math::read_plan::ReadPiece;

use super::{
    bdev::{BdevFile, BlockDevice},
    bioset::module_bio_set,
    file::{Direction, File},
};

/// Reads the common fields of a live bio.
///
/// # Safety
///
/// `raw` points to a live bio that the caller may read.
unsafe fn opf(raw: *mut bindings::bio) -> u32 {
    // SAFETY: see the function's contract.
    unsafe { (*raw).bi_opf }
}

fn op_of(opf: u32) -> u32 {
    opf & ((1 << bindings::REQ_OP_BITS) - 1)
}

/// A bio that the caller owns: it must end up submitted or ended exactly
/// once, which the implementors guarantee in `Drop`.
pub(crate) trait OwnedBio: Sized {
    fn into_raw(self) -> NonNull<bindings::bio>;
    /// # Safety
    ///
    /// `raw` came from `into_raw` of the same type and is given back once.
    unsafe fn from_raw(raw: NonNull<bindings::bio>) -> Self;
}

/// Implements [`OwnedBio`] for a type `{ raw: NonNull<bio> }` whose `Drop`
/// gives the bio back.
macro_rules! owned_bio {
    ($t:ident) => {
        impl OwnedBio for $t {
            fn into_raw(self) -> NonNull<bindings::bio> {
                let raw = self.raw;
                // Ownership moves to the caller: no `Drop`.
                core::mem::forget(self);
                raw
            }

            unsafe fn from_raw(raw: NonNull<bindings::bio>) -> Self {
                Self { raw }
            }
        }

        // SAFETY: a bio may be submitted or ended from any thread.
        unsafe impl Send for $t {}
    };
}
owned_bio!(FilteredBio);
owned_bio!(DiskBio);

/// A bio on its way to a filtered device that the filter took over. If it is
/// dropped it is sent on to the device: a write is never lost.
///
/// # Invariants
///
/// `raw` is a live bio that passed the device's filter and that nobody else
/// submits or ends.
pub(crate) struct FilteredBio {
    raw: NonNull<bindings::bio>,
}

impl FilteredBio {
    /// Take over the bio at `raw`.
    ///
    /// # Safety
    ///
    /// `raw` is a live bio handed to the filter, which becomes its only owner.
    pub(crate) unsafe fn new(raw: *mut bindings::bio) -> Option<Self> {
        NonNull::new(raw).map(|raw| Self { raw })
    }

    fn get(&self) -> *mut bindings::bio {
        self.raw.as_ptr()
    }

    /// Whether the bio changes data on the device: a write, zone append,
    /// write-zeroes, discard or secure erase with a non-empty range (an
    /// empty flush does not).
    pub(crate) fn changes_data(&self) -> bool {
        // SAFETY: by the type invariant the bio is live and ours to read.
        let (opf, size) = unsafe { (opf(self.get()), (*self.get()).bi_iter.bi_size) };
        size != 0
            && matches!(
                op_of(opf),
                bindings::req_op_REQ_OP_WRITE
                    | bindings::req_op_REQ_OP_ZONE_APPEND
                    | bindings::req_op_REQ_OP_WRITE_ZEROES
                    | bindings::req_op_REQ_OP_DISCARD
                    | bindings::req_op_REQ_OP_SECURE_ERASE
            )
    }

    /// Whether the submitter asked not to wait (REQ_NOWAIT).
    pub(crate) fn nowait(&self) -> bool {
        // SAFETY: by the type invariant the bio is live.
        unsafe { opf(self.get()) & (1 << bindings::req_flag_bits___REQ_NOWAIT) != 0 }
    }

    /// First sector and number of sectors, in the coordinates of the device
    /// the bio was submitted to: for a partition, its own, not the disk's.
    pub(crate) fn sectors(&self) -> (u64, u64) {
        let raw = self.get();
        // SAFETY: by the type invariant the bio is live; its `bi_bdev` is
        // the device it was submitted to, live while the bio is.
        let (sector, size, flags, start) = unsafe {
            (
                (*raw).bi_iter.bi_sector,
                (*raw).bi_iter.bi_size,
                (*raw).bi_flags,
                (*(*raw).bi_bdev).bd_start_sect,
            )
        };
        // A partition's bios are remapped to disk sectors before filters
        // see them.
        let remapped = flags & (1 << bindings::BIO_REMAPPED) != 0;
        let sector = if remapped { sector.saturating_sub(start) } else { sector };
        (sector, u64::from(size >> 9))
    }

    /// End the bio with `err` instead of submitting it (EAGAIN for a
    /// REQ_NOWAIT bio that would wait).
    pub(crate) fn fail(self, err: Error) {
        let raw = self.into_raw().as_ptr();
        // SAFETY: the bio is ours; ending it gives it back to its submitter.
        unsafe {
            (*raw).bi_status = bindings::errno_to_blk_status(err.to_errno());
            bindings::bio_endio(raw);
        }
    }
}

impl Drop for FilteredBio {
    fn drop(&mut self) {
        // SAFETY: the bio is ours and passed the filter; this sends it to the
        // device past the filter, once.
        unsafe { bindings::resubmit_filtered_bio(self.get()) };
    }
}

/// What an image disk's bio asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiskOp {
    Read,
    Write,
    Flush,
    Other,
}

/// A bio sent to one of this module's disks. If it is dropped without being
/// ended, it ends with an I/O error.
///
/// # Invariants
///
/// `raw` is a live bio that this driver owns until it ends it.
pub(crate) struct DiskBio {
    raw: NonNull<bindings::bio>,
}

impl DiskBio {
    /// Take over the bio at `raw`.
    ///
    /// # Safety
    ///
    /// `raw` is a live bio handed to the driver's `submit_bio`.
    pub(crate) unsafe fn new(raw: *mut bindings::bio) -> Option<Self> {
        NonNull::new(raw).map(|raw| Self { raw })
    }

    fn get(&self) -> *mut bindings::bio {
        self.raw.as_ptr()
    }

    pub(crate) fn op(&self) -> DiskOp {
        // SAFETY: by the type invariant the bio is live.
        let (opf, size) = unsafe { (opf(self.get()), (*self.get()).bi_iter.bi_size) };
        match op_of(opf) {
            bindings::req_op_REQ_OP_READ => DiskOp::Read,
            bindings::req_op_REQ_OP_WRITE if size > 0 => DiskOp::Write,
            bindings::req_op_REQ_OP_WRITE | bindings::req_op_REQ_OP_FLUSH => DiskOp::Flush,
            _ => DiskOp::Other,
        }
    }

    /// First sector and number of sectors.
    pub(crate) fn sectors(&self) -> (u64, u64) {
        // SAFETY: by the type invariant the bio is live.
        let iter = unsafe { (*self.get()).bi_iter };
        (iter.bi_sector, u64::from(iter.bi_size >> 9))
    }

    /// Call `f(offset, data)` for each piece of the bio's memory, in order;
    /// `offset` is the byte offset of the piece in the bio's data. A piece
    /// never crosses a page. Stops at the first error.
    pub(crate) fn for_each_piece(&mut self, f: impl FnMut(usize, &mut [u8]) -> Result) -> Result {
        self.for_each_piece_in(0..usize::MAX, f)
    }

    /// The same for the bytes of the bio's data in `range` only.
    pub(crate) fn for_each_piece_in(
        &mut self,
        range: Range<usize>,
        mut f: impl FnMut(usize, &mut [u8]) -> Result,
    ) -> Result {
        const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;
        // SAFETY: by the type invariant the bio is live; its iterator and
        // vector describe its memory and are not changed while we own it.
        let (mut iter, vecs) = unsafe { ((*self.get()).bi_iter, (*self.get()).bi_io_vec) };
        let mut offset = 0usize;
        while iter.bi_size > 0 && offset < range.end {
            // SAFETY: `bi_idx` indexes the bio's vector while `bi_size` says
            // data is left.
            let bv = unsafe { *vecs.add(iter.bi_idx as usize) };
            let in_bv = iter.bi_bvec_done as usize;
            let len = (bv.bv_len as usize - in_bv).min(iter.bi_size as usize);
            // A multi-page vector covers physically contiguous pages.
            let start = bv.bv_offset as usize + in_bv;
            let mut done = 0;
            while done < len && offset < range.end {
                let pos = start + done;
                let n = (PAGE_SIZE - pos % PAGE_SIZE).min(len - done).min(range.end - offset);
                // The piece's bytes before `range`.
                let skip = range.start.saturating_sub(offset).min(n);
                if skip < n {
                    // SAFETY: the page is the `pos / PAGE_SIZE`-th of the
                    // vector's contiguous range (contiguous `struct page`s
                    // on x86_64's vmemmap); it is mapped for the closure's
                    // call only, and the bio's memory is the driver's while
                    // it owns the bio.
                    let r = unsafe {
                        let page = bv.bv_page.add(pos / PAGE_SIZE);
                        let addr = bindings::kmap_local_page(page).cast::<u8>();
                        let data = core::slice::from_raw_parts_mut(addr.add(pos % PAGE_SIZE + skip), n - skip);
                        let r = f(offset + skip, data);
                        bindings::kunmap_local(addr.cast());
                        r
                    };
                    r?;
                }
                offset += n;
                done += n;
            }
            iter.bi_size -= len as u32;
            if in_bv + len == bv.bv_len as usize {
                iter.bi_idx += 1;
                iter.bi_bvec_done = 0;
            } else {
                iter.bi_bvec_done += len as u32;
            }
        }
        Ok(())
    }

    /// Bytes of data.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: by the type invariant the bio is live.
        unsafe { (*self.get()).bi_iter.bi_size as usize }
    }

    /// Read the bytes of the bio's data in `range` (whole sectors) from the
    /// same place on `bdev`, straight into its memory, and wait. Called in a
    /// no-I/O scope.
    pub(crate) fn read_part_from(&mut self, bdev: &BlockDevice, range: Range<usize>) -> Result {
        if range.start % 512 != 0 || range.len() % 512 != 0 || range.end > self.len() {
            return Err(EINVAL);
        }
        let set = module_bio_set()?;
        // SAFETY: both are live; the clone shares the bio's memory, which is
        // ours while we own the bio, and a sleeping mask cannot fail to get a
        // clone from the bio set's mempool.
        let clone = unsafe {
            bindings::bio_alloc_clone(
                bdev.as_raw(),
                self.get(),
                bindings::GFP_KERNEL,
                set,
            )
        };
        if clone.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: the clone is ours until `bio_put`; the range is inside it;
        // the I/O is synchronous.
        let status = unsafe {
            bindings::bio_trim(clone, (range.start / 512) as u64, (range.len() / 512) as u64);
            let status = bindings::submit_bio_wait(clone);
            bindings::bio_put(clone);
            status
        };
        kernel::error::to_result(status)
    }

    /// Fill the bytes of the bio's data in `range` from `file` at byte
    /// `pos`.
    pub(crate) fn read_part_from_file(&mut self, range: Range<usize>, file: &File, pos: u64) -> Result {
        if range.end > self.len() {
            return Err(EINVAL);
        }
        // SAFETY: by the type invariant the bio is live; its iterator and
        // vector describe its memory and are not changed while we own it.
        let (iter, vecs) = unsafe { ((*self.get()).bi_iter, (*self.get()).bi_io_vec) };
        // The vectors, from the current one, that hold the data left.
        let need = iter.bi_bvec_done as usize + iter.bi_size as usize;
        let mut nr = 0;
        let mut covered = 0;
        while covered < need {
            // SAFETY: the bio's vectors from `bi_idx` hold `need` bytes.
            covered += unsafe { (*vecs.add(iter.bi_idx as usize + nr)).bv_len } as usize;
            nr += 1;
        }
        // SAFETY: as above; `range` of the data left is inside them, and the
        // bio's memory is the driver's while it owns the bio.
        unsafe {
            let vecs = core::slice::from_raw_parts(vecs.add(iter.bi_idx as usize), nr);
            file.rw_vectors(vecs, iter.bi_bvec_done as usize + range.start, range.len(), pos, Direction::Read)
        }
    }

    /// Read the bio's data from where `pieces` say, straight into its
    /// memory, without waiting: the pieces are its runs one after the other
    /// from its start, together its whole length. When every piece has been
    /// read, the bio ends with what `guard` makes of the result (the first
    /// error), then `guard` is dropped (in the last read's completion, any
    /// context); the `targets` stay open until then. Gives the bio back if
    /// the pieces do not cover it (or there are none) or memory is short:
    /// the caller is submitting I/O and must not wait for memory.
    pub(crate) fn read_async<G: ReadEnd, const T: usize>(
        self,
        targets: [Arc<BdevFile>; T],
        pieces: &[ReadPiece],
        guard: G,
    ) -> Result<(), (Self, G)> {
        let covered = pieces.iter().try_fold(0usize, |sum, p| {
            (p.target < T && p.len > 0 && p.len % 512 == 0).then(|| sum.checked_add(p.len)).flatten()
        });
        // No piece, no read to end the bio.
        if covered != Some(self.len()) || pieces.is_empty() {
            return Err((self, guard));
        }
        let (Ok(ctx), Ok(set)) = (KBox::<ReadContext<G, T>>::new_uninit(GFP_NOWAIT), module_bio_set()) else {
            return Err((self, guard));
        };
        // Every clone first, linked through `bi_next` in the pieces' order:
        // one refused gives the bio back untouched.
        let mut chain: *mut bindings::bio = core::ptr::null_mut();
        let mut end = self.len();
        for piece in pieces.iter().rev() {
            end -= piece.len;
            // SAFETY: both bios are live; the clone shares the bio's
            // memory, which is ours while we own the bio. Without a sleeping
            // mask the clone may be refused, never waited for.
            let clone = unsafe {
                bindings::bio_alloc_clone(targets[piece.target].bdev().as_raw(), self.get(), bindings::GFP_NOWAIT, set)
            };
            if clone.is_null() {
                put_chain(chain);
                return Err((self, guard));
            }
            // SAFETY: the clone is ours, not submitted; the piece is inside
            // it (the pieces cover the bio).
            unsafe {
                bindings::bio_trim(clone, (end / 512) as u64, (piece.len / 512) as u64);
                (*clone).bi_iter.bi_sector = piece.sector;
                (*clone).bi_next = chain;
            }
            chain = clone;
        }
        let ctx = KBox::into_raw(KBox::write(
            ctx,
            ReadContext {
                parent: self,
                _targets: targets,
                guard,
                pending: AtomicUsize::new(pieces.len()),
                errno: AtomicI32::new(0),
            },
        ));
        while !chain.is_null() {
            let clone = chain;
            // SAFETY: the clones are ours until submitted; `piece_done`
            // takes the context back when the last one ends, and nothing
            // here touches the context or a clone once it is submitted.
            unsafe {
                chain = (*clone).bi_next;
                (*clone).bi_next = core::ptr::null_mut();
                (*clone).bi_private = ctx.cast();
                (*clone).bi_end_io = Some(piece_done::<G, T>);
                bindings::submit_bio_noacct(clone);
            }
        }
        Ok(())
    }

    /// End the bio: successfully, or with `err`.
    pub(crate) fn end(self, result: Result) {
        let status = match result {
            Ok(()) => 0,
            // SAFETY: any errno value maps to a status.
            Err(e) => unsafe { bindings::errno_to_blk_status(e.to_errno()) },
        };
        let raw = self.into_raw().as_ptr();
        // SAFETY: the bio is ours; ending it gives it back.
        unsafe {
            (*raw).bi_status = status;
            bindings::bio_endio(raw);
        }
    }
}

impl Drop for DiskBio {
    fn drop(&mut self) {
        let raw = self.get();
        // SAFETY: the bio is ours and was not ended: end it, once.
        unsafe {
            (*raw).bi_status = bindings::errno_to_blk_status(EIO.to_errno());
            bindings::bio_endio(raw);
        }
    }
}

/// Decides how a bio read by [`DiskBio::read_async`] ends.
pub(crate) trait ReadEnd: Send {
    /// The read ended with `read`: the result the bio ends with. Called in
    /// the read's completion (any context: it must not sleep).
    fn result(&self, read: Result) -> Result;
}

/// What a read sent on by [`DiskBio::read_async`] ends when done.
struct ReadContext<G, const T: usize> {
    parent: DiskBio,
    _targets: [Arc<BdevFile>; T],
    guard: G,
    /// Pieces not ended yet.
    pending: AtomicUsize,
    /// The first error of a piece.
    errno: AtomicI32,
}

/// Drop clones linked through `bi_next`, never submitted.
fn put_chain(mut chain: *mut bindings::bio) {
    while !chain.is_null() {
        // SAFETY: the caller's clones, ours, not submitted.
        unsafe {
            let next = (*chain).bi_next;
            bindings::bio_put(chain);
            chain = next;
        }
    }
}

/// The end of a piece of a read sent on by [`DiskBio::read_async`].
///
/// # Safety
///
/// `clone` is one of the clones that function submitted, ending once.
unsafe extern "C" fn piece_done<G: ReadEnd, const T: usize>(clone: *mut bindings::bio) {
    // SAFETY: the clone is live until `bio_put`; its private pointer is the
    // context, alive until the last piece ends, at the earliest this one.
    // Any status maps to an errno.
    let (ctx, last) = unsafe {
        let ctx = (*clone).bi_private.cast::<ReadContext<G, T>>();
        let errno = bindings::blk_status_to_errno((*clone).bi_status);
        bindings::bio_put(clone);
        if errno != 0 {
            let _ = (*ctx).errno.compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed);
        }
        (ctx, (*ctx).pending.fetch_sub(1, Ordering::AcqRel) == 1)
    };
    if last {
        // SAFETY: every other piece has ended: the context is ours, given
        // back once.
        let ctx = unsafe { KBox::from_raw(ctx) };
        let ReadContext { parent, _targets, guard, errno, .. } = KBox::into_inner(ctx);
        parent.end(guard.result(kernel::error::to_result(errno.into_inner())));
        drop(guard);
    }
}

/// A FIFO of owned bios, linked through `bi_next`: queueing never allocates
/// and so never fails. Dropping the queue drops its bios.
///
/// # Invariants
///
/// `head`..`tail` is a `bi_next` chain of bios owned as `B`, ending in null.
pub(crate) struct BioQueue<B: OwnedBio> {
    head: *mut bindings::bio,
    tail: *mut bindings::bio,
    _owned: PhantomData<B>,
}

impl<B: OwnedBio> BioQueue<B> {
    pub(crate) const fn new() -> Self {
        Self {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
            _owned: PhantomData,
        }
    }

    pub(crate) fn push(&mut self, bio: B) {
        let raw = bio.into_raw().as_ptr();
        // SAFETY: `raw` is now owned by the queue; `tail`, if any, is the
        // last bio of the chain (type invariant).
        unsafe {
            (*raw).bi_next = core::ptr::null_mut();
            if self.tail.is_null() {
                self.head = raw;
            } else {
                (*self.tail).bi_next = raw;
            }
        }
        self.tail = raw;
    }

    pub(crate) fn pop(&mut self) -> Option<B> {
        let raw = NonNull::new(self.head)?;
        // SAFETY: `raw` is the first bio of the chain, owned by the queue;
        // unlinked, it goes back to its owner type.
        unsafe {
            self.head = (*raw.as_ptr()).bi_next;
            (*raw.as_ptr()).bi_next = core::ptr::null_mut();
            if self.head.is_null() {
                self.tail = core::ptr::null_mut();
            }
            Some(B::from_raw(raw))
        }
    }
}

impl<B: OwnedBio> Drop for BioQueue<B> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

// SAFETY: the queue owns its bios, which are `Send` as `B`.
unsafe impl<B: OwnedBio + Send> Send for BioQueue<B> {}
