//! The hot path's micro-optimisations, each measured and each removable.
//!
//! Every one was kept because `make bench` (or a profile of it) showed a
//! gain; every one can be removed without changing behaviour, and the bench
//! line named below is the one that would show the loss. Figures are from
//! the commit that added each (scheduler CPU per hook call, min of 7 runs,
//! interleaved A/B rounds) and belong here, not in the code's comments.
//!
//! - `plain_text`: SSE2 check that a string needs no JSON escaping, so it is
//!   copied as it is. The five short strings of a hook: 57 -> 14 ns in a
//!   standalone loop; 100 B hook 654-666 -> 606-607 ns (5db61a1). Guard:
//!   "hook cost, 100 B payload". Remove: make `is_plain_ascii` the byte loop
//!   of its non-x86_64 branch.
//! - `peerhost`: per-scheduler cache of the last IPv4 peerhost tuple's text,
//!   sparing five calls into the VM and a format per message. 100 B hook
//!   557-571 -> 557-561 ns (049aca9, within noise on its own, kept because
//!   it removes VM calls that grow with scheduler contention). Guard:
//!   "hook cost, 100 B payload". Remove: `address_entry` (the NIF's
//!   `encode/term_entries.rs`) formats `ipv4_octets` each time.
//! - `record_buffer`: the next record's allocation made and prefetched for
//!   writing at the end of each hook call, so that encoding into it does
//!   not stall on cache lines last written by the producer thread (43304c9;
//!   the hook encodes into it directly since issue 38, bench/NOTES.md).
//!   Guard: "hook cost, 100 B payload". Remove: `take` returns `Vec::new()`
//!   and `finish` returns `buf` as it is.
//! - `libc_malloc`: glibc's mmap and trim thresholds raised for librdkafka's
//!   buffers, which the BEAM's malloc settings otherwise turn into an
//!   mmap/munmap pair per request (strace, 5M hooks of 1 KB: 14 000 pairs
//!   before, none after). 100 B hook ~1.23 -> ~0.99 us, 1 KB ~1.84 -> ~1.61
//!   us with the broker up (5109f8d). Guard: "hook cost, 1024 B payload" and
//!   "end to end". Remove: drop the `tune()` call in `Bridge::start`.
//! - The bridge's resource (the NIF's `nif/handle.rs`): the resource
//!   type's pointer is kept from load instead of rustler's per-call
//!   `TypeId` registry lookup (~3% of a 100 B hook in perf). 532-534 -> 501-509 ns (c69da51). Guard:
//!   "hook cost, 100 B payload". Remove: a `rustler::Resource` with
//!   `ResourceArc<Bridge>`, which also needs the load/upgrade takeover in
//!   `nif::handle` reworked.
//! - The global allocator (the NIF's `allocator.rs`): mimalloc frees records
//!   allocated on a scheduler on the producer thread without glibc's arena
//!   lock (futex waits on the hook path in perf). Guard: "8 processes". Remove: delete
//!   the `#[global_allocator]`. (Blocks of 4 MiB and more go to glibc,
//!   which gives them back; that is for memory, not speed.)

pub mod libc_malloc;
pub mod peerhost;
pub mod plain_text;
pub mod record_buffer;
