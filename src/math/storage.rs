// SPDX-License-Identifier: GPL-2.0
//! Difference storage space: where the next chunk goes, and when and by how
//! much the storage must grow.
//!
//! Plain `core` Rust, compiled into the module and unit-tested on the host.

/// Space of a difference storage, in sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageSpace {
    /// Sectors the storage has now.
    pub capacity: u64,
    /// Sectors handed out so far (chunks are never freed while the snapshot
    /// lives).
    pub used: u64,
    /// Sectors the storage may grow to.
    pub limit: u64,
    /// Sectors it grows by at a time.
    pub step: u64,
}

/// What the storage should do about its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// Enough free space.
    None,
    /// Grow by this many sectors.
    Grow(u64),
    /// Free space is low and the limit is reached.
    LimitReached,
}

impl StorageSpace {
    /// A storage of `capacity` sectors that may grow up to `limit` sectors
    /// (never below what it has), `step` sectors at a time (at least one).
    pub fn new(capacity: u64, limit: u64, step: u64) -> Self {
        Self {
            capacity,
            used: 0,
            limit: limit.max(capacity),
            step: step.max(1),
        }
    }

    /// Take `sectors`: returns where they start, or `None` if they do not fit
    /// in the current capacity.
    pub fn alloc(&mut self, sectors: u64) -> Option<u64> {
        let end = self.used.checked_add(sectors)?;
        if end > self.capacity {
            return None;
        }
        let start = self.used;
        self.used = end;
        Some(start)
    }

    /// Whether to grow now: when free space is below half a step and the
    /// limit allows, by a step (or what is left up to the limit).
    pub fn growth(&self) -> Growth {
        if self.capacity - self.used >= self.step / 2 {
            Growth::None
        } else {
            self.next_step().map_or(Growth::LimitReached, Growth::Grow)
        }
    }

    /// How much the next growth adds: a step, or what is left up to the
    /// limit; `None` at the limit.
    pub fn next_step(&self) -> Option<u64> {
        (self.capacity < self.limit).then(|| self.step.min(self.limit - self.capacity))
    }

    /// The size, in sectors, the storage asks to grow to when `sectors` more
    /// do not fit or free space runs low (`sectors` 0): a step beyond what
    /// it has, or as much as the allocation needs, within the limit (as
    /// upstream reports it: at the limit, the limit).
    pub fn requested(&self, sectors: u64) -> u64 {
        let needed = self.used.saturating_add(sectors);
        self.capacity.saturating_add(self.step).max(needed).min(self.limit)
    }

    /// The storage grew by `sectors`.
    pub fn grown(&mut self, sectors: u64) {
        self.capacity = self.capacity.saturating_add(sectors).min(self.limit);
    }
}
