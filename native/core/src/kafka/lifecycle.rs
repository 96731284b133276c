//! Where a producer generation is in its life, set by the bridge and read
//! by the producer thread and the delivery callback.

use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Lifecycle {
    /// Taking records from the queue.
    Run = 0,
    /// Replaced by a new generation: flush, then hand the rest back to the
    /// queue (memory mode).
    Retire = 1,
    /// The bridge stops: flush until the deadline, count the rest dropped.
    Stop = 2,
}

pub struct AtomicLifecycle(AtomicU8);

impl AtomicLifecycle {
    pub fn new(lifecycle: Lifecycle) -> AtomicLifecycle {
        AtomicLifecycle(AtomicU8::new(lifecycle as u8))
    }

    pub fn load(&self) -> Lifecycle {
        match self.0.load(SeqCst) {
            0 => Lifecycle::Run,
            1 => Lifecycle::Retire,
            _ => Lifecycle::Stop,
        }
    }

    pub fn store(&self, lifecycle: Lifecycle) {
        self.0.store(lifecycle as u8, SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.load() == Lifecycle::Run
    }
}
