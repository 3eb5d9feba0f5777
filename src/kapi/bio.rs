// SPDX-License-Identifier: GPL-2.0
//! Bios (`struct bio`) seen by a block device filter.

use kernel::{bindings, types::Opaque};

/// A bio on its way to a filtered device.
///
/// # Invariants
///
/// The wrapped `struct bio` is live and not yet submitted further for as long
/// as the borrow.
#[repr(transparent)]
pub(crate) struct Bio(Opaque<bindings::bio>);

impl Bio {
    /// Borrow the bio at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points to a live bio that nobody else submits or ends for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a Self {
        // SAFETY: `Bio` is a transparent wrapper; the caller guarantees
        // the bio is live for `'a`.
        unsafe { &*ptr.cast() }
    }
}

impl Bio {
    /// Whether the bio changes data on the device: a write, write-zeroes,
    /// discard or secure erase with a non-empty range (an empty flush does
    /// not).
    pub(crate) fn changes_data(&self) -> bool {
        let raw = self.0.get();
        // SAFETY: by the type invariant the bio is live and ours to read.
        let (opf, size) = unsafe { ((*raw).bi_opf, (*raw).bi_iter.bi_size) };
        let op = opf & ((1 << bindings::REQ_OP_BITS) - 1);
        size != 0
            && matches!(
                op,
                bindings::req_op_REQ_OP_WRITE
                    | bindings::req_op_REQ_OP_WRITE_ZEROES
                    | bindings::req_op_REQ_OP_DISCARD
                    | bindings::req_op_REQ_OP_SECURE_ERASE
            )
    }

    /// First sector and number of sectors, in the coordinates of the device
    /// the bio was submitted to: for a partition, its own, not the disk's.
    pub(crate) fn sectors(&self) -> (u64, u64) {
        let raw = self.0.get();
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
}
