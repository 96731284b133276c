//! Where a producer generation is in its life, set by the bridge and read
//! by the producer thread and the delivery callback.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};

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

pub struct AtomicLifecycle {
    lifecycle: AtomicU8,
    /// Set by the producer thread once it has left `Run`: it takes no more
    /// records from the queue.
    stopped_taking: AtomicBool,
}

impl AtomicLifecycle {
    pub fn new(lifecycle: Lifecycle) -> AtomicLifecycle {
        AtomicLifecycle { lifecycle: AtomicU8::new(lifecycle as u8), stopped_taking: AtomicBool::new(false) }
    }

    pub fn load(&self) -> Lifecycle {
        match self.lifecycle.load(SeqCst) {
            0 => Lifecycle::Run,
            1 => Lifecycle::Retire,
            _ => Lifecycle::Stop,
        }
    }

    pub fn store(&self, lifecycle: Lifecycle) {
        self.lifecycle.store(lifecycle as u8, SeqCst);
    }

    /// The producer thread: no record is taken from the queue after this.
    pub fn note_stopped_taking(&self) {
        self.stopped_taking.store(true, SeqCst);
    }

    pub fn has_stopped_taking(&self) -> bool {
        self.stopped_taking.load(SeqCst)
    }

    pub fn is_running(&self) -> bool {
        self.load() == Lifecycle::Run
    }
}
