// SPDX-License-Identifier: GPL-2.0
//! blksnap: block device snapshots and change block tracking.
//!
//! Layers: `kapi` wraps the C interfaces (all `unsafe` lives there), the
//! domain modules (`tracker`, ...) are safe Rust, and `ctl` turns ioctls into
//! typed requests and errors into errno values.

mod cbt_map;
mod ctl;
mod kapi;
mod math;
mod tracker;

use kernel::{c_str, prelude::*};

module! {
    type: Blksnap,
    name: "blksnap",
    author: "blksnap-rs developers",
    description: "Block device snapshots and change block tracking",
    license: "GPL",
}

struct Blksnap {
    // Dropped in this order: no new control request, then no new attach.
    _control: kapi::control::Registration,
    _filter: kapi::blkfilter::Registration<tracker::Tracker>,
}

impl kernel::Module for Blksnap {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let filter = kapi::blkfilter::Registration::new(c_str!("blksnap"), module)?;
        let control = kapi::control::Registration::new()?;
        Ok(Self {
            _control: control,
            _filter: filter,
        })
    }
}
