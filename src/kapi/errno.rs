// SPDX-License-Identifier: GPL-2.0
//! Error codes that the 6.12 `kernel::error::code` module does not define.

use kernel::{bindings, error::Error};

/// "Operation not supported".
pub(crate) fn eopnotsupp() -> Error {
    Error::from_errno(-(bindings::EOPNOTSUPP as i32))
}
