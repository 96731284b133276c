//! The clocks: Unix milliseconds (what Kafka and the spool keep) and
//! `Instant`s (what records carry in memory).

use std::time::{Duration, Instant};

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Now, as both clocks: records carry an `Instant`, the spool Unix ms.
#[derive(Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_ms: u64,
}

impl Now {
    pub fn get() -> Now {
        Now { instant: Instant::now(), unix_ms: unix_ms() }
    }

    pub fn unix_ms_of(&self, at: Instant) -> u64 {
        self.unix_ms.saturating_sub(self.instant.saturating_duration_since(at).as_millis() as u64)
    }

    /// The `Instant` of a Unix-milliseconds time read back from the spool.
    pub fn instant_of(&self, unix_ms: u64) -> Instant {
        let age = Duration::from_millis(self.unix_ms.saturating_sub(unix_ms));
        self.instant.checked_sub(age).unwrap_or(self.instant)
    }
}
