// SPDX-License-Identifier: GPL-2.0
//! Chunk buffers: whole pages holding one chunk's data, read from a block
//! device with bios and moved to and from files.

use kernel::{
    alloc::Flags,
    bindings,
    page::{Page, PAGE_SIZE},
    prelude::*,
    sync::Arc,
};

use super::{
    bdev::{BdevFile, BlockDevice},
    bioset::module_bio_set,
    file::{Direction, File},
    task::plugged,
};

/// `len` bytes of data in pages.
pub(crate) struct ChunkBuf {
    pages: KVec<Page>,
    len: usize,
}

impl ChunkBuf {
    /// A buffer of `len` bytes (contents undefined until filled).
    pub(crate) fn new(len: usize, flags: kernel::alloc::Flags) -> Result<Self> {
        let n = len.div_ceil(PAGE_SIZE);
        let mut pages = KVec::with_capacity(n, flags)?;
        for _ in 0..n {
            pages.push(Page::alloc_page(flags)?, flags)?;
        }
        Ok(Self { pages, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copy `out.len()` bytes at `offset` out of the buffer.
    pub(crate) fn read_at(&self, mut offset: usize, out: &mut [u8]) -> Result {
        let end = offset.checked_add(out.len()).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        let mut done = 0;
        while done < out.len() {
            let in_page = offset % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(out.len() - done);
            // SAFETY: `out[done..done + n]` is valid for writes of `n` bytes
            // and does not overlap the page, which is ours.
            unsafe {
                self.pages[offset / PAGE_SIZE].read_raw(out[done..].as_mut_ptr(), in_page, n)?
            };
            done += n;
            offset += n;
        }
        Ok(())
    }

    /// Copy `data` into the buffer at `offset`.
    pub(crate) fn write_at(&mut self, mut offset: usize, data: &[u8]) -> Result {
        let end = offset.checked_add(data.len()).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        let mut done = 0;
        while done < data.len() {
            let in_page = offset % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(data.len() - done);
            // SAFETY: `data[done..done + n]` is valid for reads of `n` bytes
            // and does not overlap the page, which we hold mutably.
            unsafe { self.pages[offset / PAGE_SIZE].write_raw(data[done..].as_ptr(), in_page, n)? };
            done += n;
            offset += n;
        }
        Ok(())
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

    /// The buffer's pages as I/O vectors.
    fn vectors(&self) -> Result<KVec<bindings::bio_vec>> {
        let mut vecs = KVec::with_capacity(self.pages.len(), GFP_KERNEL)?;
        self.push_vectors(&mut vecs)?;
        Ok(vecs)
    }

    /// Append the buffer's pages to `vecs`.
    fn push_vectors(&self, vecs: &mut KVec<bindings::bio_vec>) -> Result {
        let mut left = self.len;
        for page in self.pages.iter() {
            let n = left.min(PAGE_SIZE);
            vecs.push(
                bindings::bio_vec {
                    bv_page: page.as_ptr(),
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
    let pages = bufs.clone().map(|b| b.pages.len()).sum();
    let mut vecs = KVec::with_capacity(pages, GFP_KERNEL)?;
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
        for pages in buf.pages.chunks(bindings::BIO_MAX_VECS as usize) {
            self.bios.reserve(1, self.alloc.flags())?;
            // SAFETY: `bdev` is live (the caller's duty); at most
            // BIO_MAX_VECS vectors. If it may wait, the bio set's mempool
            // cannot fail.
            let bio = unsafe {
                bindings::bio_alloc_bioset(
                    bdev.as_raw(),
                    pages.len() as u16,
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
                for page in pages {
                    // The last chunk of a device may end inside a page.
                    let n = left.min(PAGE_SIZE);
                    // Cannot fail: the bio has a vector for each page.
                    let _ = bindings::bio_add_page(bio, page.as_ptr(), n as u32, 0);
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
