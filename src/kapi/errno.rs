// SPDX-License-Identifier: GPL-2.0
//! Error codes that the 6.12 `kernel::error::code` module does not define.

use kernel::{bindings, error::Error};

fn errno(e: u32) -> Error {
    Error::from_errno(-(e as i32))
}

/// "Operation not supported".
pub(crate) fn eopnotsupp() -> Error {
    errno(bindings::EOPNOTSUPP)
}

/// "Operation already in progress".
pub(crate) fn ealready() -> Error {
    errno(bindings::EALREADY)
}

/// "No data available".
pub(crate) fn enodata() -> Error {
    errno(bindings::ENODATA)
}

/// "File name too long".
pub(crate) fn enametoolong() -> Error {
    errno(bindings::ENAMETOOLONG)
}
