// SPDX-License-Identifier: GPL-2.0
//! blksnap's own bio set. The bios blksnap allocates for its own I/O must
//! not come from a pool whose bios it may hold back (`fs_bio_set`, which
//! file systems' writes come from, and copy-on-write holds writes): under
//! memory pressure it could wait for one of them forever.

use kernel::{
    bindings,
    error::to_result,
    init::pin_init_from_closure,
    prelude::*,
    types::Opaque,
};

use super::global::{Global, Published};

/// A bio set with its reserve pool.
///
/// # Invariants
///
/// `raw` is an initialised bio set until drop.
#[pin_data(PinnedDrop)]
pub(crate) struct BioSet {
    #[pin]
    raw: Opaque<bindings::bio_set>,
}

static BIO_SET: Global<BioSet> = Global::new();

impl BioSet {
    /// Create the module's bio set, used by this module's I/O until the
    /// guard is dropped (once that I/O is over).
    pub(crate) fn publish() -> Result<Published<BioSet>> {
        Ok(BIO_SET.publish(KBox::try_pin_init(Self::new(), GFP_KERNEL)?))
    }

    fn new() -> impl PinInit<Self, Error> {
        // SAFETY: the closure initialises the slot in place and fails only
        // after bioset_init() has undone its own work.
        let raw = unsafe {
            pin_init_from_closure(|slot: *mut Opaque<bindings::bio_set>| {
                let set = Opaque::raw_get(slot);
                // bioset_init() expects a zeroed structure.
                core::ptr::write_bytes(set, 0, 1);
                to_result(bindings::bioset_init(
                    set,
                    bindings::BIO_POOL_SIZE,
                    0,
                    bindings::BIOSET_NEED_BVECS as i32,
                ))
            })
        };
        try_pin_init!(Self { raw <- raw }? Error)
    }
}

/// The module's bio set, to allocate from.
pub(super) fn module_bio_set() -> Result<*mut bindings::bio_set> {
    BIO_SET.get().map(|set| set.raw.get()).ok_or(ENOMEM)
}

#[pinned_drop]
impl PinnedDrop for BioSet {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: by the type invariant the set is initialised; its owner
        // drops it once no bio of it is in flight.
        unsafe { bindings::bioset_exit(self.raw.get()) };
    }
}

// SAFETY: allocating from a bio set is thread-safe; it is freed once.
unsafe impl Send for BioSet {}
// SAFETY: as above.
unsafe impl Sync for BioSet {}
