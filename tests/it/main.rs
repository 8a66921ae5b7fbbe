//! Integration tests: the built binary, driven end to end. One test binary with
//! modules, so the crate links once.

#[path = "../support/bin.rs"]
mod bin;
mod support {
    pub(crate) use super::bin;
}

mod once;
mod validate;
