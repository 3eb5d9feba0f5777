// SPDX-License-Identifier: GPL-2.0
//! The kernel's random number generator.

use kernel::bindings;

/// Fill `buf` with random bytes.
pub(crate) fn fill(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    unsafe { bindings::get_random_bytes(buf.as_mut_ptr().cast(), buf.len()) };
}
