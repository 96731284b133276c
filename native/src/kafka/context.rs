//! The producer's librdkafka context: delivery reports (settled in memory
//! mode, passed to the spool thread in spool modes), connection errors and
//! statistics, and the polling that serves them.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::clock::unix_ms;
use crate::kafka::in_flight::{InFlight, Tag};
use crate::kafka::lifecycle::{AtomicLifecycle, Lifecycle};
use crate::log::Level;
use crate::metrics::{inc, LatencyCounts};
use crate::queue::Record;
use crate::runtime::{ConnectionState, LastError, Shared};

/// A delivery report for the spool thread, which settles spool records.
pub enum Report {
    Settled { seq: usize, delivered: bool },
    /// Taken back from librdkafka on stop; `record` is rebuilt from it.
    Purged { seq: usize, record: Record },
}

pub struct Context {
    shared: Arc<Shared>,
    lifecycle: Arc<AtomicLifecycle>,
    retries_seen: AtomicI64,
    /// Spool modes: reports go here and the opaque is the spool thread's
    /// sequence number. Memory mode: `None`, reports are handled inline.
    pub reports: Option<Mutex<Vec<Report>>>,
    /// The clock as of the current poll (ms since the bridge's epoch, Unix
    /// ms): one reading per poll instead of one per delivery report.
    poll_epoch_ms: AtomicU32,
    poll_unix_ms: AtomicI64,
    /// The reports of the current poll, added up (see `Tally`).
    tally: Mutex<Tally>,
}

/// The delivery reports of one poll, added up and applied to the shared
/// counters once per poll instead of once per record. The queue budget is
/// written by every hook call too, and the per-topic table is a map behind
/// a lock.
#[derive(Default)]
struct Tally {
    reports: u64,
    released_bytes: usize,
    released_records: usize,
    delivered: u64,
    topics: Vec<(String, u64)>,
    latency: LatencyCounts,
}

impl Tally {
    fn delivered(&mut self, topic: &str) {
        self.delivered += 1;
        match self.topics.iter_mut().find(|(name, _)| name == topic) {
            Some((_, count)) => *count += 1,
            None => self.topics.push((topic.to_string(), 1)),
        }
    }
}

/// Serves what librdkafka has ready (one event, one produce response),
/// with the clock the delivery reports use read once; true if it settled
/// any record.
fn serve_one(producer: &BaseProducer<Context>) -> bool {
    let context = producer.context();
    context.poll_epoch_ms.store(context.shared.millis_since_epoch(Instant::now()) as u32, Relaxed);
    context.poll_unix_ms.store(unix_ms() as i64, Relaxed);
    producer.poll(Duration::ZERO);
    context.apply_tally()
}

/// Serves every delivery report that is ready: `BaseProducer::poll` with a
/// zero timeout serves one event per call, which capped deliveries at a
/// batch per loop round. Returns whether any record was settled.
pub fn poll_ready(producer: &BaseProducer<Context>) -> bool {
    let mut settled = false;
    for _ in 0..1024 {
        if !serve_one(producer) {
            break;
        }
        settled = true;
    }
    settled
}

/// Serves delivery reports, waiting up to `timeout` for the first ones.
/// rdkafka's own `poll(timeout)` passes the deadline's remaining time in
/// whole milliseconds, so its last millisecond is a busy loop of
/// zero-timeout polls (a third of this thread's CPU in a profile); this
/// sleeps in 1 ms steps instead.
pub fn poll(producer: &BaseProducer<Context>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !poll_ready(producer) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(1)));
    }
}

/// `Producer::flush` without its busy last millisecond per poll (see `poll`).
pub fn flush(producer: &BaseProducer<Context>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    // A zero-timeout flush asks librdkafka to send without lingering.
    while producer.flush(Duration::ZERO).is_err() && Instant::now() < deadline {
        poll(producer, deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(10)));
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                Level::Error
            }
            RDKafkaLogLevel::Warning => Level::Warning,
            _ => return,
        };
        self.shared.logger.limited(level, "librdkafka_log", fac, &format!("librdkafka {fac}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let status = &self.shared.status;
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            status.state.store(ConnectionState::Disconnected);
            // Keep the cause: "all brokers down" after a TLS or SASL failure
            // would hide what the operator has to fix.
            if status.last_error_is_settings() {
                return;
            }
        }
        let error = describe_connection_error(code, reason);
        self.shared.logger.limited(Level::Warning, "kafka_connection_problem", "", &format!("Kafka connection problem: {}", error.text));
        status.set(error);
    }

    /// Reads only the brokers: the statistics also hold every topic and
    /// partition the producer has used, which rdkafka's `Statistics`
    /// would allocate on each interval; here they are skipped unread.
    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(stats) = serde_json::from_slice::<BrokerStatistics>(statistics) {
            self.broker_stats(stats);
        }
    }
}

/// The part of librdkafka's statistics the bridge reads.
#[derive(serde::Deserialize)]
struct BrokerStatistics {
    brokers: std::collections::HashMap<String, BrokerState>,
}

#[derive(serde::Deserialize)]
struct BrokerState {
    state: String,
    txretries: u64,
}

impl Context {
    fn broker_stats(&self, stats: BrokerStatistics) {
        let up = stats.brokers.values().any(|b| b.state == "UP");
        let status = &self.shared.status;
        if up {
            status.state.store(ConnectionState::Connected);
        } else if status.state.load() == ConnectionState::Connected {
            status.state.store(ConnectionState::Disconnected);
        }
        let retries: u64 = stats.brokers.values().map(|b| b.txretries).sum();
        let before = self.retries_seen.swap(retries as i64, Relaxed);
        if retries as i64 > before {
            self.shared.metrics.retried.fetch_add(retries - before as u64, Relaxed);
        }
    }
}

impl ProducerContext for Context {
    /// The record's bytes, which librdkafka points into, and its tag.
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, inflight: Box<InFlight>) {
        let tag: Tag = inflight.tag;
        let memory_mode = self.reports.is_none();
        {
            let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            tally.reports += 1;
            if memory_mode {
                tally.released_bytes += tag.budget_bytes();
                tally.released_records += 1;
            }
            if let Ok(message) = result {
                tally.delivered(message.topic());
                if memory_mode {
                    let now = self.poll_epoch_ms.load(Relaxed);
                    tally.latency.record(now.wrapping_sub(tag.enqueued_ms()) as u64);
                }
            }
        }
        if let Some(reports) = &self.reports {
            let report = match result {
                Ok(_) => Report::Settled { seq: tag.seq(), delivered: true },
                Err((error, message)) if is_purge(error) => {
                    Report::Purged { seq: tag.seq(), record: inflight.into_record(message) }
                }
                Err((error, message)) => {
                    self.failed(message.topic(), error);
                    Report::Settled { seq: tag.seq(), delivered: false }
                }
            };
            reports.lock().unwrap_or_else(|e| e.into_inner()).push(report);
            return;
        }
        match result {
            Ok(_) => {}
            Err((error, message)) if is_purge(error) => match self.lifecycle.load() {
                Lifecycle::Retire => self.requeue(inflight.into_record(message)),
                Lifecycle::Stop => inc(&self.shared.metrics.dropped_on_stop),
                // Run: the producer is dropped while its thread unwinds from
                // a panic; Bridge::stop counts what the budget still holds.
                Lifecycle::Run => {}
            },
            Err((error, message)) => self.failed(message.topic(), error),
        }
    }
}

fn is_purge(error: &KafkaError) -> bool {
    matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight))
}

impl Context {
    /// `spool`: whether the reports go to a spool thread.
    pub fn new(shared: Arc<Shared>, lifecycle: Arc<AtomicLifecycle>, spool: bool) -> Context {
        Context {
            shared,
            lifecycle,
            retries_seen: AtomicI64::new(0),
            reports: spool.then(|| Mutex::new(Vec::new())),
            poll_epoch_ms: AtomicU32::new(0),
            poll_unix_ms: AtomicI64::new(0),
            tally: Mutex::default(),
        }
    }

    /// Applies the reports the last poll added up; false if there were none.
    fn apply_tally(&self) -> bool {
        let tally = std::mem::take(&mut *self.tally.lock().unwrap_or_else(|e| e.into_inner()));
        if tally.reports == 0 {
            return false;
        }
        let shared = &self.shared;
        let metrics = &shared.metrics;
        metrics.inflight.fetch_sub(tally.reports, Relaxed);
        shared.queue.release_many(tally.released_bytes, tally.released_records);
        if tally.delivered > 0 {
            metrics.delivered.fetch_add(tally.delivered, Relaxed);
            for (topic, count) in &tally.topics {
                metrics.topic_outcome(topic, true, *count);
            }
            metrics.latency.add(&tally.latency);
            shared.status.state.store(ConnectionState::Connected);
            shared.status.last_delivery_ms.store(self.poll_unix_ms.load(Relaxed), Relaxed);
        }
        true
    }

    fn failed(&self, topic: &str, error: &KafkaError) {
        let text = format!("delivery to Kafka topic {topic:?} failed: {error}");
        // Rate-limited per error, not per topic (see kafka::handoff::refused).
        self.shared.count_failed(topic, "kafka_delivery_failed", &error.to_string(), text);
    }

    /// Queues a purged record for the next producer.
    fn requeue(&self, record: Record) {
        match self.shared.queue.requeue(record, Duration::from_secs(5)) {
            Ok(()) => inc(&self.shared.metrics.requeued),
            Err(_) => inc(&self.shared.metrics.dropped_on_stop),
        }
    }
}

/// A librdkafka connection error in words an operator can act on. A TLS
/// failure may come as `_SSL` or, when the broker's alert arrives after the
/// handshake (TLS 1.3), as a transport failure: the reason tells.
fn describe_connection_error(code: Option<RDKafkaErrorCode>, reason: &str) -> LastError {
    use RDKafkaErrorCode::*;
    let lower = reason.to_ascii_lowercase();
    let tls_reason = if lower.contains("hostname mismatch") || lower.contains("host name mismatch") {
        Some("hostname mismatch: the broker's certificate is not for this host (kafka.ssl.verify_hostname)")
    } else if lower.contains("certificate verify failed") {
        Some("certificate verify failed: the broker's certificate is signed by no CA of kafka.ssl.ca (or, without it, of the system store)")
    } else if lower.contains("certificate required") || lower.contains("peer did not return a certificate") {
        Some("no client certificate: the broker asks for one (kafka.ssl.certificate and kafka.ssl.key)")
    } else if code == Some(SSL) || lower.contains("ssl routines") || lower.contains("ssl handshake") {
        Some("see the reason")
    } else {
        None
    };
    let settings = |text| LastError { text, settings: true };
    let other = |text| LastError { text, settings: false };
    match (tls_reason, code) {
        (Some(why), _) => settings(format!("TLS handshake failed: {why}: {reason}")),
        (None, Some(Authentication | SaslAuthenticationFailed | UnsupportedSASLMechanism | IllegalSASLState)) => settings(format!(
            "SASL authentication failed: wrong kafka.sasl.username or kafka.sasl.password, or kafka.sasl.mechanism \
             not enabled on the broker: {reason}"
        )),
        (None, Some(BrokerTransportFailure | AllBrokersDown | Resolve)) => other(format!("broker unreachable: {reason}")),
        (None, _) => other(reason.to_string()),
    }
}
