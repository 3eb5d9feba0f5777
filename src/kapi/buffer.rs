// SPDX-License-Identifier: GPL-2.0
//! Chunk buffers: blocks of pages holding one chunk's data, read from a
//! block device with bios and moved to and from files.

use core::ptr::NonNull;
use kernel::{
    alloc::Flags,
    bindings,
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::Arc,
};

use super::{
    bdev::{BdevFile, BlockDevice},
    bioset::module_bio_set,
    file::{Direction, File},
    task::plugged,
};

/// The largest block of pages a buffer asks for: a default chunk (256 KiB)
/// in one block, one I/O vector.
const MAX_BLOCK_ORDER: u32 = 6;

/// `2^order` physically contiguous pages, from the page allocator.
///
/// # Invariants
///
/// `first` is an allocation of `2^order` pages, owned, in the kernel's
/// direct map (never from highmem), a compound page if `order > 0`.
struct PageBlock {
    first: NonNull<bindings::page>,
    order: u32,
}

// SAFETY: the pages are owned; any task may use or free them.
unsafe impl Send for PageBlock {}
// SAFETY: through `&PageBlock` the pages change only in `copy`, whose
// caller promises that nothing else uses the bytes it writes.
unsafe impl Sync for PageBlock {}

impl PageBlock {
    /// A block of `2^order` pages; a block of more than one page only if
    /// free ones are at hand (no reclaim, no compaction, no warning).
    fn alloc(order: u32, alloc: Alloc) -> Option<Self> {
        let gfp = if order == 0 {
            alloc.gfp()
        } else {
            // Compound: a file system doing I/O on the storage may take a
            // reference to any page of a vector (NFS and ceph direct I/O,
            // 9p), which counts on the head page only if the block is one.
            bindings::__GFP_NOWARN
                | (1 << bindings::___GFP_NORETRY_BIT)
                | (1 << bindings::___GFP_COMP_BIT)
        };
        // SAFETY: any flags and an order below MAX_PAGE_ORDER are valid;
        // none of the flags asks for highmem.
        let first = NonNull::new(unsafe { bindings::alloc_pages(gfp, order) })?;
        Some(Self { first, order })
    }

    fn len(&self) -> usize {
        PAGE_SIZE << self.order
    }

    /// Copy `n` bytes between the block at `offset` and `peer`, within one
    /// page of the block.
    ///
    /// # Safety
    ///
    /// `peer` is valid for `n` bytes (for writes, if `Peer::Into`), does not
    /// overlap the block; nothing else uses these bytes of the block.
    unsafe fn copy(&self, offset: usize, peer: Peer, n: usize) {
        let in_page = offset % PAGE_SIZE;
        assert!(offset < self.len() && n <= PAGE_SIZE - in_page);
        // SAFETY: the page is in the block (asserted); the block's pages
        // are consecutive `struct page`s (one allocation, below
        // MAX_PAGE_ORDER); the mapping is undone before returning; the
        // range is inside the page; `data` is as the caller promises.
        unsafe {
            let page = self.first.as_ptr().add(offset >> PAGE_SHIFT);
            let addr = bindings::kmap_local_page(page).cast::<u8>().add(in_page);
            match peer {
                Peer::Into(data) => core::ptr::copy_nonoverlapping(addr, data, n),
                Peer::From(data) => core::ptr::copy_nonoverlapping(data, addr, n),
            }
            bindings::kunmap_local(addr.cast());
        }
    }
}

/// The memory a copy moves a buffer's data to or from.
#[derive(Clone, Copy)]
enum Peer {
    /// Out of the buffer, into this memory.
    Into(*mut u8),
    /// Into the buffer, out of this memory.
    From(*const u8),
}

impl Peer {
    /// The same memory `n` bytes further on.
    fn skip(self, n: usize) -> Self {
        match self {
            Peer::Into(p) => Peer::Into(p.wrapping_add(n)),
            Peer::From(p) => Peer::From(p.wrapping_add(n)),
        }
    }
}

impl Drop for PageBlock {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the block is ours, of this order.
        unsafe { bindings::__free_pages(self.first.as_ptr(), self.order) };
    }
}

/// `len` bytes of data in blocks of pages (few: I/O takes a vector a
/// block).
pub(crate) struct ChunkBuf {
    blocks: KVec<PageBlock>,
    len: usize,
}

impl ChunkBuf {
    /// A buffer of `len` bytes (contents undefined until filled): blocks as
    /// large as free memory at hand allows, single pages otherwise.
    pub(crate) fn new(len: usize, alloc: Alloc) -> Result<Self> {
        let mut pages = len.div_ceil(PAGE_SIZE);
        let mut blocks = KVec::with_capacity(pages.div_ceil(1 << MAX_BLOCK_ORDER), alloc.flags())?;
        let mut order = MAX_BLOCK_ORDER;
        while pages > 0 {
            // The largest block that does not pass the end.
            order = order.min(usize::BITS - 1 - pages.leading_zeros());
            let block = loop {
                match PageBlock::alloc(order, alloc) {
                    Some(block) => break block,
                    None if order > 0 => order -= 1,
                    None => return Err(ENOMEM),
                }
            };
            pages -= 1 << order;
            blocks.push(block, alloc.flags())?;
        }
        Ok(Self { blocks, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copy between the buffer at `offset` and `len` bytes at `peer`, page
    /// by page.
    ///
    /// # Safety
    ///
    /// As for [`PageBlock::copy`], for `len` bytes at `peer`.
    unsafe fn copy(&self, mut offset: usize, peer: Peer, len: usize) -> Result {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        let mut start = 0;
        let mut done = 0;
        for block in self.blocks.iter() {
            while done < len && offset < start + block.len() {
                let n = (PAGE_SIZE - offset % PAGE_SIZE).min(len - done);
                // SAFETY: within the block and one of its pages; `data` as
                // the caller promises.
                unsafe { block.copy(offset - start, peer.skip(done), n) };
                done += n;
                offset += n;
            }
            start += block.len();
        }
        Ok(())
    }

    /// Copy `out.len()` bytes at `offset` out of the buffer.
    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> Result {
        // SAFETY: `out` is valid for writes of its length and, borrowed
        // mutably, overlaps nothing of ours.
        unsafe { self.copy(offset, Peer::Into(out.as_mut_ptr()), out.len()) }
    }

    /// Copy `data` into the buffer at `offset`.
    pub(crate) fn write_at(&mut self, offset: usize, data: &[u8]) -> Result {
        // SAFETY: `data` is valid for reads of its length; the buffer is
        // borrowed mutably.
        unsafe { self.copy(offset, Peer::From(data.as_ptr()), data.len()) }
    }

    /// Fill the buffer from `bdev`, starting at `sector`, bypassing the page
    /// cache (which may hold newer data than the device), and wait.
    pub(crate) fn read_from_bdev(&mut self, bdev: &BlockDevice, sector: u64) -> Result {
        read_all_from_bdev(bdev, [(self, sector)])
    }

    /// Fill the buffer from `file` at byte `pos`.
    pub(crate) fn read_from_file(&mut self, file: &File, pos: u64) -> Result {
        let vecs = self.vectors()?;
        // SAFETY: the vectors are this buffer's pages, `len` bytes, borrowed
        // mutably for the call.
        unsafe { file.rw_vectors(&vecs, 0, self.len, pos, Direction::Read) }
    }

    /// The buffer's blocks as I/O vectors.
    fn vectors(&self) -> Result<KVec<bindings::bio_vec>> {
        let mut vecs = KVec::with_capacity(self.blocks.len(), GFP_KERNEL)?;
        self.push_vectors(&mut vecs)?;
        Ok(vecs)
    }

    /// Append the buffer's blocks to `vecs`, a vector each.
    fn push_vectors(&self, vecs: &mut KVec<bindings::bio_vec>) -> Result {
        let mut left = self.len;
        for block in self.blocks.iter() {
            let n = left.min(block.len());
            vecs.push(
                bindings::bio_vec {
                    bv_page: block.first.as_ptr(),
                    bv_len: n as u32,
                    bv_offset: 0,
                },
                GFP_KERNEL,
            )?;
            left -= n;
        }
        Ok(())
    }
}

/// Write the buffers one after the other to `file` from byte `pos` on, in
/// one I/O: each but the last must hold whole pages (EINVAL otherwise).
pub(crate) fn write_all_to_file<'a>(
    file: &File,
    bufs: impl Iterator<Item = &'a ChunkBuf> + Clone,
    pos: u64,
) -> Result {
    let blocks = bufs.clone().map(|b| b.blocks.len()).sum();
    let mut vecs = KVec::with_capacity(blocks, GFP_KERNEL)?;
    let mut len = 0;
    for buf in bufs {
        if len % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        buf.push_vectors(&mut vecs)?;
        len += buf.len;
    }
    // SAFETY: the vectors are the buffers' pages, `len` bytes, borrowed (so
    // unchanged) for the call.
    unsafe { file.rw_vectors(&vecs, 0, len, pos, Direction::Write) }
}

/// Whether the memory for I/O may be waited for: not by a task that is
/// submitting I/O itself, which must rather fail and leave the work to a
/// worker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alloc {
    MayWait,
    NoWait,
}

impl Alloc {
    pub(crate) fn flags(self) -> Flags {
        match self {
            Self::MayWait => GFP_KERNEL,
            Self::NoWait => GFP_NOWAIT,
        }
    }

    fn gfp(self) -> bindings::gfp_t {
        match self {
            Self::MayWait => bindings::GFP_KERNEL,
            Self::NoWait => bindings::GFP_NOWAIT,
        }
    }
}

/// Reads of whole buffers from a block device, bypassing the page cache
/// (which may hold newer data than the device), all in flight together:
/// every bio is made first, so that none is sent if one cannot be; then
/// each is chained to the last one, which ends when all have.
///
/// # Invariants
///
/// `bios` are ours, not submitted.
struct ChainedReads {
    set: *mut bindings::bio_set,
    bios: KVec<*mut bindings::bio>,
    alloc: Alloc,
}

impl ChainedReads {
    fn new(alloc: Alloc) -> Result<Self> {
        Ok(Self {
            set: module_bio_set()?,
            bios: KVec::new(),
            alloc,
        })
    }

    /// Read `buf` from `bdev`, from `sector` on.
    ///
    /// # Safety
    ///
    /// `bdev` and the buffer's pages stay live until the reads end.
    unsafe fn add(&mut self, bdev: &BlockDevice, buf: &mut ChunkBuf, mut sector: u64) -> Result {
        let mut left = buf.len;
        for blocks in buf.blocks.chunks(bindings::BIO_MAX_VECS as usize) {
            self.bios.reserve(1, self.alloc.flags())?;
            // SAFETY: `bdev` is live (the caller's duty); at most
            // BIO_MAX_VECS vectors. If it may wait, the bio set's mempool
            // cannot fail.
            let bio = unsafe {
                bindings::bio_alloc_bioset(
                    bdev.as_raw(),
                    blocks.len() as u16,
                    bindings::req_op_REQ_OP_READ,
                    self.alloc.gfp(),
                    self.set,
                )
            };
            if bio.is_null() {
                return Err(ENOMEM);
            }
            let mut bytes = 0;
            // SAFETY: `bio` is ours; the pages outlive the I/O (the caller's
            // duty).
            unsafe {
                (*bio).bi_iter.bi_sector = sector;
                for block in blocks {
                    // The last chunk of a device may end inside a block.
                    let n = left.min(block.len());
                    // Cannot fail: the bio has a vector for each block.
                    let _ = bindings::bio_add_page(bio, block.first.as_ptr(), n as u32, 0);
                    left -= n;
                    bytes += n;
                }
            }
            // Cannot fail: reserved above.
            let _ = self.bios.push(bio, self.alloc.flags());
            sector += (bytes / 512) as u64;
        }
        Ok(())
    }

    /// Send every read but the last, chained to it: the last, not sent, ends
    /// when all have. `None` if there is no read.
    fn send(mut self) -> Option<*mut bindings::bio> {
        let bios = core::mem::replace(&mut self.bios, KVec::new());
        let (&last, others) = bios.split_last()?;
        for &bio in others {
            // SAFETY: by the type invariant both bios are ours, not
            // submitted; `bio` is the last's child from now on.
            unsafe {
                bindings::bio_chain(bio, last);
                bindings::submit_bio(bio);
            }
        }
        Some(last)
    }
}

impl Drop for ChainedReads {
    fn drop(&mut self) {
        for &bio in self.bios.iter() {
            // SAFETY: by the type invariant the bio is ours, never sent.
            unsafe { bindings::bio_put(bio) };
        }
    }
}

/// Fill each buffer from `bdev`, starting at its sector, bypassing the page
/// cache (which may hold newer data than the device): all reads are in
/// flight together; waits for the last. Fails if any read fails.
pub(crate) fn read_all_from_bdev<'a>(
    bdev: &BlockDevice,
    reads: impl IntoIterator<Item = (&'a mut ChunkBuf, u64)>,
) -> Result {
    let mut chain = ChainedReads::new(Alloc::MayWait)?;
    for (buf, sector) in reads {
        // SAFETY: `bdev` and the buffers are borrowed until the reads have
        // ended, below.
        unsafe { chain.add(bdev, buf, sector)? };
    }
    let Some(last) = plugged(|| chain.send()) else {
        return Ok(());
    };
    // SAFETY: `last` is ours, not submitted; it ends after every bio chained
    // to it.
    let status = unsafe {
        let status = bindings::submit_bio_wait(last);
        bindings::bio_put(last);
        status
    };
    kernel::error::to_result(status)
}

/// The owner of buffers that [`read_all_from_bdev_async`] fills.
pub(crate) trait ReadsEnd: Send + Sized {
    /// Call `add` with each buffer to fill and the sector it starts at, until
    /// it fails; the buffers stay where they are until the reads end.
    fn buffers(&self, add: impl FnMut(&mut ChunkBuf, u64) -> Result) -> Result;

    /// The reads ended with `result`. Called in their completion (any
    /// context: it must not sleep).
    fn ended(this: Pin<KBox<Self>>, result: Result);
}

/// What [`read_all_from_bdev_async`] ends when the reads are over.
struct AsyncReads<T> {
    owner: Pin<KBox<T>>,
    _bdev: Arc<BdevFile>,
}

/// Fill `owner`'s buffers from `bdev` as [`read_all_from_bdev`] does, but
/// without waiting: the owner gets them back in [`ReadsEnd::ended`]. If the
/// memory for the reads cannot be had, no read is sent and the owner is
/// given back.
pub(crate) fn read_all_from_bdev_async<T: ReadsEnd>(
    bdev: &Arc<BdevFile>,
    owner: Pin<KBox<T>>,
    alloc: Alloc,
) -> Result<(), Pin<KBox<T>>> {
    let (Ok(ctx), Ok(mut chain)) = (
        KBox::<AsyncReads<T>>::new_uninit(alloc.flags()),
        ChainedReads::new(alloc),
    ) else {
        return Err(owner);
    };
    // SAFETY: the context keeps `bdev` open and owns the buffers, which
    // nothing frees until the reads have ended.
    if owner
        .buffers(|buf, sector| unsafe { chain.add(bdev.bdev(), buf, sector) })
        .is_err()
    {
        return Err(owner);
    }
    if chain.bios.is_empty() {
        // Nothing to read: done already.
        T::ended(owner, Ok(()));
        return Ok(());
    }
    let ctx = KBox::into_raw(KBox::write(
        ctx,
        AsyncReads {
            owner,
            _bdev: bdev.clone(),
        },
    ));
    plugged(|| {
        if let Some(last) = chain.send() {
            // SAFETY: `last` is ours, not submitted, and ends after every
            // read; `reads_done` takes the context back once, then.
            unsafe {
                (*last).bi_private = ctx.cast();
                (*last).bi_end_io = Some(reads_done::<T>);
                bindings::submit_bio(last);
            }
        }
    });
    Ok(())
}

/// The end of the reads of [`read_all_from_bdev_async`].
///
/// # Safety
///
/// `bio` is the last bio that function submitted, ending once.
unsafe extern "C" fn reads_done<T: ReadsEnd>(bio: *mut bindings::bio) {
    // SAFETY: the bio is live until `bio_put`; its private pointer is the
    // boxed context, given back here once. Any status maps to an errno.
    let (ctx, errno) = unsafe {
        let ctx = KBox::from_raw((*bio).bi_private.cast::<AsyncReads<T>>());
        let errno = bindings::blk_status_to_errno((*bio).bi_status);
        bindings::bio_put(bio);
        (ctx, errno)
    };
    let AsyncReads { owner, _bdev } = KBox::into_inner(ctx);
    T::ended(owner, kernel::error::to_result(errno));
}
