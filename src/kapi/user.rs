// SPDX-License-Identifier: GPL-2.0
//! Strings from user memory.

use kernel::{bindings, prelude::*, str::CStr};

/// A NUL-terminated string copied from user address `ptr`, at most `max`
/// bytes long with its NUL (ENAMETOOLONG beyond, EFAULT on a bad pointer).
pub(crate) struct UserCString(KVec<u8>);

impl UserCString {
    pub(crate) fn copy(ptr: u64, max: usize) -> Result<Self> {
        let mut buf = KVec::from_elem(0u8, max, GFP_KERNEL)?;
        // SAFETY: `buf` has room for `max` bytes; strncpy_from_user checks
        // the user range and returns the length without the NUL or -EFAULT.
        let len = unsafe {
            bindings::strncpy_from_user(buf.as_mut_ptr().cast(), ptr as usize as *const _, max as _)
        };
        let len = usize::try_from(len).map_err(|_| Error::from_errno(len as i32))?;
        if len >= max {
            return Err(super::errno::enametoolong());
        }
        Ok(Self(buf))
    }

    pub(crate) fn as_cstr(&self) -> Result<&CStr> {
        let end = self.0.iter().position(|&b| b == 0).ok_or(EINVAL)?;
        CStr::from_bytes_with_nul(&self.0[..=end]).map_err(|_| EINVAL)
    }
}
