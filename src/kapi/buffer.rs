// SPDX-License-Identifier: GPL-2.0
//! Chunk buffers: whole pages holding one chunk's data, read from a block
//! device with bios and moved to and from files.

use kernel::{
    bindings,
    page::{Page, PAGE_SIZE},
    prelude::*,
};

use super::{
    bdev::BlockDevice,
    bioset::module_bio_set,
    file::{Direction, File},
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

/// Fill each buffer from `bdev`, starting at its sector, bypassing the page
/// cache (which may hold newer data than the device): all reads are in
/// flight together; waits for the last. Fails if any read fails.
pub(crate) fn read_all_from_bdev<'a>(
    bdev: &BlockDevice,
    reads: impl IntoIterator<Item = (&'a mut ChunkBuf, u64)>,
) -> Result {
    // Each bio is chained to the next one and submitted: the last one ends
    // when all have.
    let set = module_bio_set()?;
    let mut last: *mut bindings::bio = core::ptr::null_mut();
    let mut result = Ok(());
    'all: for (buf, mut sector) in reads {
        let mut left = buf.len;
        for pages in buf.pages.chunks(bindings::BIO_MAX_VECS as usize) {
            // SAFETY: `bdev` is live (it is borrowed); with a sleeping GFP
            // mask and at most BIO_MAX_VECS vectors the allocation from the
            // bio set's mempool cannot fail.
            let bio = unsafe {
                bindings::bio_alloc_bioset(
                    bdev.as_raw(),
                    pages.len() as u16,
                    bindings::req_op_REQ_OP_READ,
                    bindings::GFP_KERNEL,
                    set,
                )
            };
            if bio.is_null() {
                result = Err(ENOMEM);
                break 'all;
            }
            let mut bytes = 0;
            // SAFETY: `bio` is ours until submitted; the pages are ours (the
            // buffers are borrowed) and outlive the I/O, which ends before
            // this function returns. `last`, if any, is ours, not submitted.
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
                if !last.is_null() {
                    bindings::bio_chain(last, bio);
                    bindings::submit_bio(last);
                }
            }
            last = bio;
            sector += (bytes / 512) as u64;
        }
    }
    if last.is_null() {
        return result;
    }
    // SAFETY: `last` is ours, not submitted; it ends after every bio
    // chained to it.
    let status = unsafe {
        let status = bindings::submit_bio_wait(last);
        bindings::bio_put(last);
        status
    };
    result.and(kernel::error::to_result(status))
}
