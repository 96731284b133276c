//! The bridge without the VM: everything between a decoded hook event and
//! a Kafka acknowledgement that does not read an Erlang term. The NIF crate
//! (`native/src`) decodes hook arguments, encodes them through `json`, and
//! calls into this crate; see ARCHITECTURE.md.

// In the order data flows: an event's kind and fields, the parsed config,
// routing, the JSON writer's primitives, the bounded queue, the Kafka
// producer, the spool; then the shared state, the clock, metrics and logs.
pub mod event_kind;
pub mod config;
pub mod routing;
pub mod json;
pub mod queue;
pub mod kafka;
pub mod cluster_view;
pub mod sign_in;
pub mod spool;
pub mod runtime;
pub mod clock;
pub mod metrics;
pub mod log;
pub mod fast;

#[cfg(test)]
mod layout_check;

/// A file of the repository, for the tests that check what it says.
#[cfg(test)]
fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}
