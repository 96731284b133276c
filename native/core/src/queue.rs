//! The bounded hand-off between hooks and the producer thread.
//!
//! Two limits hold at once, a message count and a byte budget, and both
//! cover this queue plus what librdkafka still holds, so memory stays
//! bounded during a broker outage. Pushing never blocks.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::Overflow;
use crate::metrics::{inc, Metrics};

/// Memory per record beyond its key, value and topic: the channel slot and
/// allocator rounding here, and librdkafka's message header (~200 bytes)
/// once it is there. Counting it keeps `max_bytes` a bound on real memory.
const RECORD_OVERHEAD: usize = 256;

/// Kafka headers of one record: the metadata of `payload_encoding = raw`,
/// and MQTT 5 User-Properties (names may repeat, as in MQTT).
pub type Headers = Vec<(Cow<'static, str>, Vec<u8>)>;

/// One Kafka record waiting for the producer.
pub struct Record {
    pub topic: Arc<str>,
    /// The key's bytes followed by the value's, in one allocation.
    pub buf: Vec<u8>,
    pub key_len: Option<usize>,
    pub headers: Option<Headers>,
    /// The Kafka timestamp (unix ms); `None`: when librdkafka takes it.
    pub timestamp_ms: Option<i64>,
    pub enqueued_at: Instant,
}

impl Record {
    pub fn key(&self) -> Option<&[u8]> {
        self.key_len.map(|n| &self.buf[..n])
    }

    pub fn value(&self) -> &[u8] {
        &self.buf[self.key_len.unwrap_or(0)..]
    }

    /// What this record counts against `buffer.max_bytes`.
    pub fn budget_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().flatten().map(|(k, v)| k.len() + v.len() + 16).sum();
        self.buf.len() + self.topic.len() + headers + RECORD_OVERHEAD
    }
}

/// How the consumer thread waits for records without making pushes pay for
/// waking it. A receiver blocked on the channel costs the next push a futex
/// wake-up, more than the rest of a hook call; so while records keep coming
/// the thread naps on its own (on librdkafka's poll) and blocks on the
/// channel only once the queue has been quiet for a nap, and at least
/// `QUIET`.
pub struct Waiter {
    last_record: Instant,
    nap: Duration,
    quiet: Duration,
}

const QUIET: Duration = Duration::from_millis(20);
/// The longest nap: the thread also serves delivery reports and stops
/// between naps.
const MAX_NAP: Duration = Duration::from_millis(100);
pub const MIN_NAP: Duration = Duration::from_millis(1);

/// The nap a `Waiter` takes for a requested `nap`: clamped to
/// `MIN_NAP..=MAX_NAP`. Memory mode's linger split (`kafka::client::Linger`)
/// reads it here, so that librdkafka's share matches the real nap.
pub fn nap_between_looks(nap: Duration) -> Duration {
    nap.clamp(MIN_NAP, MAX_NAP)
}

impl Waiter {
    /// `nap_between_looks(nap)`: how long to wait between looks at the
    /// queue while records keep coming.
    pub fn new(nap: Duration) -> Waiter {
        let nap = nap_between_looks(nap);
        Waiter { last_record: Instant::now(), nap, quiet: nap.max(QUIET) }
    }

    /// The next record within `wait` (none when `wait` is zero and the queue
    /// is empty); `nap` waits on something else for up to the given time.
    pub fn recv(&mut self, rx: &Receiver<Record>, wait: Duration, nap: impl FnOnce(Duration)) -> Option<Record> {
        let record = match rx.try_recv() {
            Ok(record) => Some(record),
            Err(_) if wait.is_zero() => None,
            Err(_) if self.last_record.elapsed() < self.quiet => {
                nap(self.nap.min(wait));
                rx.try_recv().ok()
            }
            Err(_) => rx.recv_timeout(wait).ok(),
        };
        if record.is_some() {
            self.last_record = Instant::now();
        }
        record
    }
}

pub struct Queue {
    tx: Sender<Record>,
    rx: Receiver<Record>,
    budget: Budget,
    limits: Limits,
}

/// The budget's limits and overflow policy. Atomics only so that a live
/// `buffer.*` change can set them; each is read with a plain load.
struct Limits {
    max_bytes: AtomicUsize,
    max_messages: AtomicUsize,
    drop_oldest: AtomicBool,
}

/// What both the hooks and the producer write, on a cache line of its own
/// so that the limits and channel handles beside it stay read-only.
#[derive(Default)]
#[repr(align(64))]
struct Budget {
    /// Bytes of records in this queue plus those inside librdkafka.
    bytes: AtomicUsize,
    /// Records in this queue plus those inside librdkafka.
    records: AtomicUsize,
}

pub enum Pushed {
    Ok,
    Dropped,
}

impl Queue {
    pub fn new(max_messages: usize, max_bytes: usize, overflow: Overflow) -> Queue {
        // The budgets below bound the channel. crossbeam's array flavour would
        // preallocate all max_messages slots up front (~100 B each); the list
        // flavour allocates as it fills, so memory follows what is held.
        let (tx, rx) = crossbeam_channel::unbounded();
        let limits = Limits {
            max_bytes: AtomicUsize::new(max_bytes),
            max_messages: AtomicUsize::new(max_messages),
            drop_oldest: AtomicBool::new(overflow == Overflow::DropOldest),
        };
        Queue { tx, rx, budget: Budget::default(), limits }
    }

    /// New limits for the records to come (a live `buffer.*` change). What
    /// the queue holds stays: a smaller budget only refuses or evicts on the
    /// next pushes, each counted as a drop.
    pub fn set_limits(&self, max_messages: usize, max_bytes: usize, overflow: Overflow) {
        self.limits.max_bytes.store(max_bytes, Relaxed);
        self.limits.max_messages.store(max_messages, Relaxed);
        self.limits.drop_oldest.store(overflow == Overflow::DropOldest, Relaxed);
    }

    pub fn receiver(&self) -> &Receiver<Record> {
        &self.rx
    }

    /// Tries to enqueue; on overflow applies `buffer.overflow` and counts the drop.
    pub fn push(&self, record: Record, metrics: &Metrics) -> Pushed {
        let size = record.budget_bytes();
        let mut record = record;
        // drop_oldest may evict a few records to make room; each eviction is a counted drop.
        for _attempt in 0..16 {
            if self.reserve(size) {
                match self.tx.try_send(record) {
                    Ok(()) => {
                        inc(&metrics.enqueued);
                        return Pushed::Ok;
                    }
                    Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                        self.release(size);
                        record = back;
                    }
                }
            }
            if !self.drops_oldest() || !self.evict_oldest(metrics) {
                break;
            }
        }
        inc(&metrics.dropped_queue_full);
        Pushed::Dropped
    }

    /// Puts back a record that already holds its budget (after a producer
    /// switch); waits for room since it runs on the producer's thread.
    pub fn requeue(&self, record: Record, timeout: Duration) -> Result<(), Record> {
        self.budget.bytes.fetch_add(record.budget_bytes(), Relaxed);
        self.budget.records.fetch_add(1, Relaxed);
        self.tx.send_timeout(record, timeout).map_err(|e| {
            let record = e.into_inner();
            self.release(record.budget_bytes());
            record
        })
    }

    fn reserve(&self, size: usize) -> bool {
        let before = self.budget.bytes.fetch_add(size, Relaxed);
        let held_before = self.budget.records.fetch_add(1, Relaxed);
        if before + size > self.max_bytes() || held_before >= self.max_messages() {
            self.release(size);
            return false;
        }
        true
    }

    /// Gives back the budget of one record (delivered, failed or dropped).
    pub fn release(&self, size: usize) {
        self.release_many(size, 1);
    }

    /// Gives back the budget of `records` records of `bytes` in all.
    pub fn release_many(&self, bytes: usize, records: usize) {
        if records > 0 {
            self.budget.bytes.fetch_sub(bytes, Relaxed);
            self.budget.records.fetch_sub(records, Relaxed);
        }
    }

    fn evict_oldest(&self, metrics: &Metrics) -> bool {
        match self.rx.try_recv() {
            Ok(old) => {
                self.release(old.budget_bytes());
                inc(&metrics.dropped_queue_full);
                true
            }
            Err(_) => false,
        }
    }

    /// Drops the records still in the queue itself, releasing their budget;
    /// returns how many.
    pub fn discard_queued(&self) -> u64 {
        let mut records = 0;
        for record in self.rx.try_iter() {
            self.release(record.budget_bytes());
            records += 1;
        }
        records
    }

    /// Empties the queue and forgets every record the budget holds (after
    /// the producer failed); returns how many records that was.
    pub fn discard_all(&self) -> u64 {
        for record in self.rx.try_iter() {
            drop(record);
        }
        let records = self.budget.records.swap(0, Relaxed);
        self.budget.bytes.store(0, Relaxed);
        records as u64
    }

    /// Records counted against `max_messages`: queued, in the producer's
    /// hands, or inside librdkafka.
    pub fn held(&self) -> usize {
        self.budget.records.load(Relaxed)
    }

    pub fn budget_used(&self) -> usize {
        self.budget.bytes.load(Relaxed)
    }

    pub fn max_bytes(&self) -> usize {
        self.limits.max_bytes.load(Relaxed)
    }

    pub fn drops_oldest(&self) -> bool {
        self.limits.drop_oldest.load(Relaxed)
    }

    pub fn max_messages(&self) -> usize {
        self.limits.max_messages.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record { topic: "t".into(), buf: vec![0; n], key_len: None, headers: None, timestamp_ms: None, enqueued_at: Instant::now() }
    }

    #[test]
    fn drop_new_counts_every_rejection() {
        let metrics = Metrics::default();
        let queue = Queue::new(3, 1 << 20, Overflow::DropNew);
        for _ in 0..5 {
            queue.push(record(10), &metrics);
        }
        assert_eq!(queue.receiver().len(), 3);
        assert_eq!(metrics.dropped_queue_full.load(Relaxed), 2);
    }

    #[test]
    fn byte_budget_applies_before_count() {
        let metrics = Metrics::default();
        let size = record(100).budget_bytes();
        let queue = Queue::new(100, size * 2, Overflow::DropNew);
        for _ in 0..4 {
            queue.push(record(100), &metrics);
        }
        assert_eq!(queue.receiver().len(), 2);
        assert_eq!(queue.budget_used(), size * 2);
        assert_eq!(metrics.dropped_queue_full.load(Relaxed), 2);
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let metrics = Metrics::default();
        let queue = Queue::new(2, 1 << 20, Overflow::DropOldest);
        for n in 1..=4 {
            queue.push(record(n), &metrics);
        }
        let kept: Vec<usize> = queue.receiver().try_iter().map(|r| r.buf.len()).collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(metrics.dropped_queue_full.load(Relaxed), 2);
        assert_eq!(metrics.enqueued.load(Relaxed), 4);
    }

    #[test]
    fn new_limits_apply_to_the_next_pushes_only() {
        let metrics = Metrics::default();
        let queue = Queue::new(4, 1 << 20, Overflow::DropNew);
        for n in 1..=4 {
            queue.push(record(n), &metrics);
        }
        queue.set_limits(2, 1 << 20, Overflow::DropOldest);
        assert_eq!((queue.max_messages(), queue.receiver().len()), (2, 4));
        queue.push(record(5), &metrics);
        let kept: Vec<usize> = queue.receiver().try_iter().map(|r| r.buf.len()).collect();
        assert_eq!(kept, vec![4, 5]);
        assert_eq!(metrics.dropped_queue_full.load(Relaxed), 3);
    }

    /// While records keep coming the thread naps a whole linger, however
    /// long; after a nap without records it waits on the channel, where the
    /// next push wakes it.
    #[test]
    fn the_waiter_naps_a_whole_linger_then_blocks_once_quiet() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut waiter = Waiter::new(Duration::from_millis(80));
        let mut naps = Vec::new();
        assert!(waiter.recv(&rx, Duration::from_secs(1), |nap| naps.push(nap)).is_none());
        assert_eq!(naps, [Duration::from_millis(80)]);
        // Half a nap since the last look: still napping.
        std::thread::sleep(Duration::from_millis(40));
        assert!(waiter.recv(&rx, Duration::from_secs(1), |nap| naps.push(nap)).is_none());
        assert_eq!(naps.len(), 2);
        std::thread::sleep(Duration::from_millis(81));
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            tx.send(record(1)).unwrap();
        });
        assert!(waiter.recv(&rx, Duration::from_secs(10), |nap| naps.push(nap)).is_some());
        assert_eq!(naps.len(), 2);
        pusher.join().unwrap();
    }
}
