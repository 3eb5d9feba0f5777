// SPDX-License-Identifier: GPL-2.0
//! Chunk buffers: whole pages holding one chunk's data, read from a block
//! device with bios and moved to and from files.

use kernel::{
    bindings,
    page::{Page, PAGE_SIZE},
    prelude::*,
};

use super::{bdev::BlockDevice, file::File};

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
        let mut sector = sector;
        let mut left = self.len;
        for pages in self.pages.chunks(bindings::BIO_MAX_VECS as usize) {
            // SAFETY: `bdev` is live (it is borrowed); with a sleeping GFP
            // mask and at most BIO_MAX_VECS vectors the allocation from the
            // bio set's mempool cannot fail.
            let bio = unsafe {
                bindings::bio_alloc_bioset(
                    bdev.as_raw(),
                    pages.len() as u16,
                    bindings::req_op_REQ_OP_READ,
                    bindings::GFP_KERNEL,
                    core::ptr::addr_of_mut!(bindings::fs_bio_set),
                )
            };
            if bio.is_null() {
                return Err(ENOMEM);
            }
            let mut bytes = 0;
            // SAFETY: `bio` is ours until `bio_put`; the pages are ours and
            // outlive the synchronous I/O.
            let status = unsafe {
                (*bio).bi_iter.bi_sector = sector;
                for page in pages {
                    // The last chunk of a device may end inside a page.
                    let n = left.min(PAGE_SIZE);
                    // Cannot fail: the bio has a vector for each page.
                    let _ = bindings::bio_add_page(bio, page.as_ptr(), n as u32, 0);
                    left -= n;
                    bytes += n;
                }
                let status = bindings::submit_bio_wait(bio);
                bindings::bio_put(bio);
                status
            };
            kernel::error::to_result(status)?;
            sector += (bytes / 512) as u64;
        }
        Ok(())
    }

    /// Fill the buffer from `file` at byte `pos`.
    pub(crate) fn read_from_file(&mut self, file: &File, mut pos: u64) -> Result {
        let mut left = self.len;
        for page in self.pages.iter_mut() {
            let n = left.min(PAGE_SIZE);
            with_mapped(page, |data| file.read_at(&mut data[..n], pos))?;
            pos += n as u64;
            left -= n;
        }
        Ok(())
    }

    /// Write the buffer to `file` at byte `pos`.
    pub(crate) fn write_to_file(&self, file: &File, mut pos: u64) -> Result {
        let mut left = self.len;
        for page in self.pages.iter() {
            let n = left.min(PAGE_SIZE);
            // The page is only read through the mapping.
            with_mapped(page, |data| file.write_at(&data[..n], pos))?;
            pos += n as u64;
            left -= n;
        }
        Ok(())
    }
}

/// Call `f` with the page mapped as a byte slice.
fn with_mapped<T>(page: &Page, f: impl FnOnce(&mut [u8]) -> T) -> T {
    // SAFETY: the page is owned by a buffer borrowed by the caller, which
    // does not touch it through other paths meanwhile; the mapping lasts
    // until `kunmap_local`, after `f`.
    unsafe {
        let addr = bindings::kmap_local_page(page.as_ptr()).cast::<u8>();
        let r = f(core::slice::from_raw_parts_mut(addr, PAGE_SIZE));
        bindings::kunmap_local(addr.cast());
        r
    }
}
