//! The NIF library's own side of the boundary: its load and upgrade
//! callbacks and the bridge's resource handle. (The NIF functions are in
//! `lib.rs`; the term readers, used by every layer that reads hook
//! arguments, are in `terms.rs`.)

pub mod entry;
pub mod handle;
