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
    /// SASL/OAUTHBEARER tokens fetched and set, and fetches that failed.
    pub token_refreshes: AtomicU64,
    pub token_refresh_failures: AtomicU64,
    pub latency: LatencyHistogram,
    /// Per Kafka topic: (delivered, failed). Only the producer thread writes.
    pub per_topic: Mutex<TopicOutcomes>,
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
        let outcome = if delivered { (count, 0) } else { (0, count) };
        per_topic.add(topic, outcome);
    }

    /// The tracked topics, sorted by name, and the other topics' sums.
    pub fn per_topic_snapshot(&self) -> TopicSnapshot {
        let per_topic = self.per_topic.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = per_topic.rows.iter().map(|(t, (d, f))| (t.clone(), *d, *f)).collect();
        rows.sort();
        TopicSnapshot { rows, other: per_topic.other }
    }
}

/// Per-topic outcomes as `metrics()` reports them.
pub struct TopicSnapshot {
    /// (topic, delivered, failed)
    pub rows: Vec<(String, u64, u64)>,
    /// (delivered, failed) summed over the topics not in `rows`.
    pub other: (u64, u64),
}

/// Topics reported one by one; the rest are summed. A templated topic
/// (`t_${clientid}`) can make a topic per client, and a row each would
/// grow memory, `metrics()` and the Prometheus text without bound.
pub const MAX_TRACKED_TOPICS: usize = 100;

/// Per-topic (delivered, failed) for at most `MAX_TRACKED_TOPICS` topics,
/// the busiest as far as a bounded table can tell: a new topic takes the
/// place of the least busy one, whose counts move to `other`. Every record
/// stays counted exactly once.
#[derive(Default)]
pub struct TopicOutcomes {
    rows: HashMap<String, (u64, u64)>,
    other: (u64, u64),
}

impl TopicOutcomes {
    fn add(&mut self, topic: &str, (delivered, failed): (u64, u64)) {
        if let Some(row) = self.rows.get_mut(topic) {
            row.0 += delivered;
            row.1 += failed;
            return;
        }
        if self.rows.len() >= MAX_TRACKED_TOPICS {
            let least = self.rows.iter().min_by_key(|(_, (d, f))| d + f).map(|(t, _)| t.clone());
            if let Some((d, f)) = least.and_then(|t| self.rows.remove(&t)) {
                self.other.0 += d;
                self.other.1 += f;
            }
        }
        self.rows.insert(topic.to_string(), (delivered, failed));
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

    /// 100 000 one-record topics and one busy topic: at most 100 rows,
    /// the busy one among them, and every record counted once.
    #[test]
    fn per_topic_rows_are_bounded_and_sum_exactly() {
        let metrics = Metrics::default();
        for n in 0..100_000u64 {
            metrics.topic_outcome(&format!("t_{n}"), n % 3 != 0, 1);
            metrics.topic_outcome("busy", true, 1);
        }
        let TopicSnapshot { rows, other: (other_delivered, other_failed) } = metrics.per_topic_snapshot();
        assert!(rows.len() <= MAX_TRACKED_TOPICS);
        assert!(rows.iter().any(|(t, d, _)| t == "busy" && *d == 100_000));
        let delivered: u64 = rows.iter().map(|r| r.1).sum::<u64>() + other_delivered;
        let failed: u64 = rows.iter().map(|r| r.2).sum::<u64>() + other_failed;
        assert_eq!((delivered, failed), (100_000 + 66_666, 33_334));
    }

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
