//! The bridge's runtime state: what the hooks, every producer generation,
//! the spool and the NIF calls share.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Instant;

use crate::cluster_view::ClusterView;
use crate::config::BufferMode;
use crate::log::{Level, Logger};
use crate::metrics::{inc, Metrics};
use crate::queue::Queue;

/// State shared by the hooks, every producer generation and the NIF calls.
pub struct Shared {
    /// `buffer.mode = memory` (what `queue_len` reads); a live change sets it.
    memory_mode: AtomicBool,
    pub metrics: Metrics,
    pub queue: Queue,
    pub status: Status,
    pub logger: Logger,
    epoch: Instant,
}

impl Shared {
    pub fn new(mode: BufferMode, queue: Queue, logger: Logger) -> Shared {
        Shared {
            memory_mode: AtomicBool::new(mode == BufferMode::Memory),
            metrics: Metrics::default(),
            queue,
            status: Status::default(),
            logger,
            epoch: Instant::now(),
        }
    }

    pub fn set_mode(&self, mode: BufferMode) {
        self.memory_mode.store(mode == BufferMode::Memory, SeqCst);
    }

    /// Records the bridge holds that librdkafka does not have yet.
    pub fn queue_len(&self) -> u64 {
        if self.memory_mode.load(SeqCst) {
            // The queue's budget also covers what librdkafka holds.
            (self.queue.held() as u64).saturating_sub(self.metrics.inflight.load(Relaxed))
        } else {
            // The queue only holds what the spool thread has not taken yet.
            self.queue.held() as u64
        }
    }

    /// Counts a record Kafka did not take; logs `text` as `msg` (at most
    /// once per `msg`, `error` and interval) and keeps it as the last error.
    pub fn count_failed(&self, topic: &str, msg: &'static str, error: &str, text: String) {
        inc(&self.metrics.failed);
        self.metrics.topic_outcome(topic, false, 1);
        self.logger.limited(Level::Error, msg, error, &text);
        self.status.set_error(text);
    }

    pub fn millis_since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

/// The connection to Kafka as `status()` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectionState {
    Connecting = 0,
    Connected = 1,
    Disconnected = 2,
    /// The producer thread panicked; the owning Erlang process restarts the bridge.
    Failed = 3,
}

/// A `ConnectionState` that librdkafka's callbacks, the spool thread and
/// `status()` read and write without a lock.
#[derive(Default)]
pub struct AtomicConnectionState(AtomicU8);

impl AtomicConnectionState {
    pub fn load(&self) -> ConnectionState {
        match self.0.load(SeqCst) {
            1 => ConnectionState::Connected,
            2 => ConnectionState::Disconnected,
            3 => ConnectionState::Failed,
            _ => ConnectionState::Connecting,
        }
    }

    pub fn store(&self, state: ConnectionState) {
        self.0.store(state as u8, SeqCst);
    }
}

#[derive(Default)]
pub struct Status {
    pub state: AtomicConnectionState,
    last_error: Mutex<LastError>,
    /// Unix ms of the last successful delivery (0 = none yet).
    pub last_delivery_ms: AtomicI64,
    cluster: Mutex<ClusterView>,
    /// Why the newest producer's last token fetch failed
    /// (`kafka::token_refresh`), with that producer's number; empty when it
    /// worked or there is no token sign-in.
    sign_in_error: Mutex<(u64, String)>,
}

#[derive(Default)]
pub struct LastError {
    pub text: String,
    /// A TLS or SASL failure: the operator has to change a setting.
    pub settings: bool,
}

impl Status {
    pub fn set_error(&self, text: String) {
        self.set(LastError { text, settings: false });
    }

    pub fn set(&self, error: LastError) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).text.clone()
    }

    pub fn last_error_is_settings(&self) -> bool {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).settings
    }

    pub fn set_cluster(&self, view: ClusterView) {
        *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) = view;
    }

    /// What `producer` (numbered in the order producers were made) found;
    /// false, and ignored, if a newer producer has reported since: a
    /// retiring producer of an old config must not hide the current one's.
    pub fn set_sign_in_error(&self, producer: u64, text: String) -> bool {
        let mut current = self.sign_in_error.lock().unwrap_or_else(|e| e.into_inner());
        if producer < current.0 {
            return false;
        }
        *current = (producer, text);
        true
    }

    pub fn sign_in_error(&self) -> String {
        self.sign_in_error.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    pub fn cluster(&self) -> ClusterView {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
