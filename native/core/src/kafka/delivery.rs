//! What a delivery report does with its record, one type per buffer mode,
//! and the tally that applies a poll's reports to the shared counters at
//! once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::DeliveryResult;

use crate::kafka::in_flight::{into_record, Tag};
use crate::kafka::lifecycle::{AtomicLifecycle, Lifecycle};
use crate::metrics::{inc, LatencyCounts};
use crate::queue::Record;
use crate::runtime::{ConnectionState, Shared};

/// A delivery report for the spool thread, which settles spool records.
pub enum Report {
    Settled { seq: usize, delivered: bool },
    /// Taken back from librdkafka on stop; `record` is rebuilt from it.
    Purged { seq: usize, record: Record },
}

/// Memory mode: a report settles its record here. The record leaves the
/// budget; a purged one goes back to the queue when the producer retires.
pub struct MemoryDeliveries {
    pub lifecycle: Arc<AtomicLifecycle>,
}

/// Spool modes: reports are kept for the spool thread (`take`), which
/// settles the spool records they name by sequence number.
#[derive(Default)]
pub struct SpoolDeliveries {
    reports: Mutex<Vec<Report>>,
}

impl MemoryDeliveries {
    /// `now_ms`: the poll's clock, in ms since the bridge's epoch.
    /// `buf`: the record's bytes, freed here unless it goes back to the queue.
    pub fn report(&self, shared: &Shared, tally: &mut Tally, now_ms: u32, result: &DeliveryResult<'_>, tag: Tag, buf: Vec<u8>) {
        tally.reports += 1;
        tally.released_bytes += tag.budget_bytes();
        tally.released_records += 1;
        match result {
            Ok(message) => {
                tally.delivered(message);
                tally.latency.record(now_ms.wrapping_sub(tag.enqueued_ms()) as u64);
            }
            Err((error, message)) if is_purge(error) => match self.lifecycle.load() {
                Lifecycle::Stop => inc(&shared.metrics.dropped_on_stop),
                // Retire: for the next generation. Run: a producer replaced
                // after a fatal error (or librdkafka's own purge at that
                // error), for the fresh one; or one dropped while its thread
                // unwinds from a panic, and Bridge::stop counts the queue.
                Lifecycle::Retire | Lifecycle::Run => requeue(shared, into_record(buf, message)),
            },
            Err((error, message)) => failed(shared, message.topic(), error),
        }
    }
}

impl SpoolDeliveries {
    pub fn report(&self, shared: &Shared, tally: &mut Tally, result: &DeliveryResult<'_>, tag: Tag, buf: Vec<u8>) {
        let seq = tag.seq();
        tally.reports += 1;
        let report = match result {
            Ok(message) => {
                tally.delivered(message);
                Report::Settled { seq, delivered: true }
            }
            Err((error, message)) if is_purge(error) => Report::Purged { seq, record: into_record(buf, message) },
            Err((error, message)) => {
                failed(shared, message.topic(), error);
                Report::Settled { seq, delivered: false }
            }
        };
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).push(report);
    }

    /// The reports gathered since the last call.
    pub fn take(&self) -> Vec<Report> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn is_purge(error: &KafkaError) -> bool {
    matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight))
}

fn failed(shared: &Shared, topic: &str, error: &KafkaError) {
    let text = format!("delivery to Kafka topic {topic:?} failed: {error}");
    // Rate-limited per error, not per topic (see kafka::handoff::refused).
    shared.count_failed(topic, "kafka_delivery_failed", &error.to_string(), text);
}

/// Queues a purged record for the next producer.
fn requeue(shared: &Shared, record: Record) {
    match shared.queue.requeue(record, Duration::from_secs(5)) {
        Ok(()) => inc(&shared.metrics.requeued),
        Err(_) => inc(&shared.metrics.dropped_on_stop),
    }
}

/// The delivery reports of one poll, added up and applied to the shared
/// counters once per poll instead of once per record. The queue budget is
/// written by every hook call too, and the per-topic table is a map behind
/// a lock.
#[derive(Default)]
pub struct Tally {
    reports: u64,
    released_bytes: usize,
    released_records: usize,
    delivered: u64,
    topics: Vec<TopicCount>,
    latency: LatencyCounts,
}

/// Deliveries to one topic in a poll, found by librdkafka's topic handle:
/// the name is read once per topic and poll, not per report (a `strlen`,
/// a UTF-8 check and a compare each).
struct TopicCount {
    /// The report's `rkt`, as an address: only compared, never followed.
    /// librdkafka keeps the topic alive while its messages are, so within
    /// one poll an address names one topic.
    handle: usize,
    name: String,
    count: u64,
}

impl Tally {
    fn delivered(&mut self, message: &BorrowedMessage<'_>) {
        self.delivered += 1;
        // SAFETY: `ptr` is the report's message, valid for this call.
        let handle = unsafe { (*message.ptr()).rkt } as usize;
        match self.topics.iter_mut().find(|t| t.handle == handle) {
            Some(topic) => topic.count += 1,
            None => self.topics.push(TopicCount { handle, name: message.topic().to_string(), count: 1 }),
        }
    }

    /// Applies these reports to `shared`; false if there were none.
    /// `unix_ms`: the poll's wall clock, for `last_delivery_ms`.
    pub fn apply(self, shared: &Shared, unix_ms: i64) -> bool {
        if self.reports == 0 {
            return false;
        }
        let metrics = &shared.metrics;
        metrics.inflight.fetch_sub(self.reports, Relaxed);
        shared.queue.release_many(self.released_bytes, self.released_records);
        if self.delivered > 0 {
            metrics.delivered.fetch_add(self.delivered, Relaxed);
            for topic in &self.topics {
                metrics.topic_outcome(&topic.name, true, topic.count);
            }
            metrics.latency.add(&self.latency);
            shared.status.state.store(ConnectionState::Connected);
            shared.status.last_delivery_ms.store(unix_ms, Relaxed);
        }
        true
    }
}

/// The delivery reports of a producer, by the buffer mode it serves.
pub enum Deliveries {
    Memory(MemoryDeliveries),
    Spool(SpoolDeliveries),
}
