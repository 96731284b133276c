//! Counters the hook path and the producer thread update with relaxed
//! atomics; reading them takes no lock that the hot path could wait on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// The hook-side counters share one cache line and the producer's the
/// lines after it (`repr(C)` keeps this order): a counter the other side
/// writes on the same line would cost every hook call a cache-line transfer.
#[derive(Default)]
#[repr(C, align(64))]
pub struct Metrics {
    // Written by the hooks.
    pub received: AtomicU64,
    pub filtered_out: AtomicU64,
    pub enqueued: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_on_stop: AtomicU64,
    pub dropped_invalid: AtomicU64,
    _end_of_hook_line: [u64; 2],
    // Written by the producer or spool thread.
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub requeued: AtomicU64,
    /// Records handed to librdkafka and not yet reported.
    pub inflight: AtomicU64,
    /// Spool (disk and hybrid modes): records written, synced as `buffer.fsync` says.
    pub spooled: AtomicU64,
    pub dropped_spool_full: AtomicU64,
    /// Records lost to a spool write error (disk failure, no space).
    pub dropped_spool_error: AtomicU64,
    /// Torn or corrupted records found while reading the spool, and skipped.
    pub spool_corrupt_records: AtomicU64,
    /// Gauges: bytes and segment files the spool holds on disk.
    pub spool_bytes: AtomicU64,
    pub spool_segments: AtomicU64,
    /// Spool bytes not yet acknowledged by Kafka.
    pub spool_backlog_bytes: AtomicU64,
    pub latency: LatencyHistogram,
    /// Per Kafka topic: (delivered, failed). Only the producer thread writes.
    pub per_topic: Mutex<HashMap<String, (u64, u64)>>,
}

// The padding above is counted by hand: a hook counter added or removed
// must not push the producer's counters back onto the hooks' line.
const _: () = assert!(std::mem::offset_of!(Metrics, delivered) == 64);

pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl Metrics {
    /// Counts `count` records delivered to (or failed for) `topic`.
    pub fn topic_outcome(&self, topic: &str, delivered: bool, count: u64) {
        let mut per_topic = self.per_topic.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match per_topic.get_mut(topic) {
            Some(entry) => entry,
            None => per_topic.entry(topic.to_string()).or_default(),
        };
        if delivered {
            entry.0 += count;
        } else {
            entry.1 += count;
        }
    }

    pub fn per_topic_snapshot(&self) -> Vec<(String, u64, u64)> {
        let per_topic = self.per_topic.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = per_topic.iter().map(|(t, (d, f))| (t.clone(), *d, *f)).collect();
        rows.sort();
        rows
    }
}

/// Upper bounds (ms) of the latency buckets; the last bucket is open.
const BOUNDS_MS: [u64; 24] =
    [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000];

const BUCKETS: usize = BOUNDS_MS.len() + 1;

fn bucket_of(ms: u64) -> usize {
    BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(BOUNDS_MS.len())
}

/// Enqueue-to-ack latency, in fixed buckets, so recording is one atomic add.
#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
}

/// Latencies counted locally, added to the histogram in one go.
#[derive(Default)]
pub struct LatencyCounts([u64; BUCKETS]);

impl LatencyCounts {
    pub fn record(&mut self, ms: u64) {
        self.0[bucket_of(ms)] += 1;
    }
}

impl LatencyHistogram {
    pub fn record(&self, ms: u64) {
        self.buckets[bucket_of(ms)].fetch_add(1, Relaxed);
    }

    pub fn add(&self, counts: &LatencyCounts) {
        for (bucket, &count) in self.buckets.iter().zip(&counts.0) {
            if count > 0 {
                bucket.fetch_add(count, Relaxed);
            }
        }
    }

    /// The bucket bound at or below which `q` of the samples fall (0 if none).
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return BOUNDS_MS.get(i).copied().unwrap_or(BOUNDS_MS[BOUNDS_MS.len() - 1] * 10);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_bucket_bounds() {
        let h = LatencyHistogram::default();
        for _ in 0..98 {
            h.record(4);
        }
        h.record(120);
        h.record(120);
        assert_eq!(h.quantile(0.5), 5);
        assert_eq!(h.quantile(0.99), 150);
    }
}
