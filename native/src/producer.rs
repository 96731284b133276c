//! The producer thread: drains the queue into librdkafka and turns delivery
//! reports into metrics.
//!
//! One thread owns one `BaseProducer`. On a Kafka reconfiguration a new
//! producer starts on the same queue while the old one "retires": it stops
//! taking records, flushes what it holds and hands anything it could not
//! deliver back to the queue, so no accepted event is lost by the switch.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext, PurgeConfig};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use crate::config::{is_secret, BufferConfig, BufferMode, KafkaConfig};
use crate::handoff::{produce, produce_run, InFlight, Produced, TopicNames};
use crate::log::{Level, Logger};
use crate::metrics::{inc, LatencyCounts, Metrics};
use crate::queue::{Queue, Record, Waiter};
use crate::spool::Spool;
use crate::spooler;
use crate::renewal::{Draining, MakeProducer, Renewal};
use crate::topic_creator::TopicCreator;

/// Records handed to librdkafka between two polls.
const BATCH: usize = 1024;

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

    /// Counts a record Kafka did not take; logs `text` (at most once per
    /// `log_key` and interval) and keeps it as the last error.
    pub fn count_failed(&self, topic: &str, log_key: &str, text: String) {
        inc(&self.metrics.failed);
        self.metrics.topic_outcome(topic, false, 1);
        self.logger.limited(Level::Error, log_key, &text);
        self.status.set_error(text);
    }

    fn millis_since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

/// `Status::state` values; the default, 0, is connecting.
pub const CONNECTED: u8 = 1;
pub const DISCONNECTED: u8 = 2;
/// The producer thread panicked; the owning Erlang process restarts the bridge.
pub const FAILED: u8 = 3;

/// Set in the environment a test VM is started with: the first memory
/// producer of the OS process panics on its first record, so the test can
/// check that a failed producer is reported and the bridge restarted. Read
/// once per producer start, never per record.
const INJECT_PANIC_ENV: &str = "EMQX_KAFKA_BRIDGE_TEST_PRODUCER_PANIC";
static PANIC_INJECTED: AtomicBool = AtomicBool::new(false);

#[derive(Default)]
pub struct Status {
    pub state: AtomicU8,
    last_error: Mutex<LastError>,
    /// Unix ms of the last successful delivery (0 = none yet).
    pub last_delivery_ms: AtomicI64,
}

#[derive(Default)]
struct LastError {
    text: String,
    /// A TLS or SASL failure: the operator has to change a setting.
    settings: bool,
}

impl Status {
    pub fn set_error(&self, text: String) {
        self.set(LastError { text, settings: false });
    }

    fn set(&self, error: LastError) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).text.clone()
    }

    fn last_error_is_settings(&self) -> bool {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).settings
    }
}

pub const RUN: u8 = 0;
const RETIRE: u8 = 1;
const STOP: u8 = 2;

/// A delivery report for the spool thread, which settles spool records.
pub enum Report {
    Settled { seq: usize, delivered: bool },
    /// Taken back from librdkafka on stop; `record` is rebuilt from it.
    Purged { seq: usize, record: Record },
}

pub struct Context {
    shared: Arc<Shared>,
    mode: Arc<AtomicU8>,
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
        self.shared.logger.limited(level, &format!("librdkafka:{fac}"), &format!("librdkafka {fac}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let status = &self.shared.status;
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            status.state.store(DISCONNECTED, Relaxed);
            // Keep the cause: "all brokers down" after a TLS or SASL failure
            // would hide what the operator has to fix.
            if status.last_error_is_settings() {
                return;
            }
        }
        let error = describe_connection_error(code, reason);
        self.shared.logger.limited(Level::Warning, "kafka-error", &format!("Kafka connection problem: {}", error.text));
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
            status.state.store(CONNECTED, Relaxed);
        } else if status.state.load(Relaxed) == CONNECTED {
            status.state.store(DISCONNECTED, Relaxed);
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
        let opaque = inflight.tag;
        let memory_mode = self.reports.is_none();
        {
            let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            tally.reports += 1;
            if memory_mode {
                tally.released_bytes += opaque >> 32;
                tally.released_records += 1;
            }
            if let Ok(message) = result {
                tally.delivered(message.topic());
                if memory_mode {
                    let now = self.poll_epoch_ms.load(Relaxed);
                    tally.latency.record(now.wrapping_sub((opaque & 0xffff_ffff) as u32) as u64);
                }
            }
        }
        if let Some(reports) = &self.reports {
            let report = match result {
                Ok(_) => Report::Settled { seq: opaque, delivered: true },
                Err((error, message)) if is_purge(error) => {
                    Report::Purged { seq: opaque, record: inflight.into_record(message) }
                }
                Err((error, message)) => {
                    self.failed(message.topic(), error);
                    Report::Settled { seq: opaque, delivered: false }
                }
            };
            reports.lock().unwrap_or_else(|e| e.into_inner()).push(report);
            return;
        }
        match result {
            Ok(_) => {}
            Err((error, message)) if is_purge(error) => match self.mode.load(SeqCst) {
                RETIRE => self.requeue(inflight.into_record(message)),
                STOP => inc(&self.shared.metrics.dropped_on_stop),
                // RUN: the producer is dropped while its thread unwinds from
                // a panic; Bridge::stop counts what the budget still holds.
                _ => {}
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
    fn new(shared: Arc<Shared>, mode: Arc<AtomicU8>, spool: bool) -> Context {
        Context {
            shared,
            mode,
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
            shared.status.state.store(CONNECTED, Relaxed);
            shared.status.last_delivery_ms.store(self.poll_unix_ms.load(Relaxed), Relaxed);
        }
        true
    }

    fn failed(&self, topic: &str, error: &KafkaError) {
        let text = format!("delivery to Kafka topic {topic:?} failed: {error}");
        // Rate-limited per error, not per topic (see handoff::refused).
        self.shared.count_failed(topic, &format!("delivery:{error}"), text);
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

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// librdkafka's share in disk and hybrid modes, at most.
const SPOOL_INFLIGHT_KBYTES: usize = 64 * 1024;
const SPOOL_INFLIGHT_MESSAGES: usize = 100_000;

/// librdkafka's client config for `kafka`. librdkafka's own queue gets half
/// of each budget: the rest stays in our queue, where `drop_oldest` can
/// still evict during an outage.
pub fn client_config(kafka: &KafkaConfig, buffer: &BufferConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    config.set("statistics.interval.ms", "1000");
    let (mut kbytes, mut messages) = (buffer.max_bytes / 2048, buffer.max_messages / 2);
    if buffer.mode != BufferMode::Memory {
        // The spool is the buffer: librdkafka only needs enough in flight to
        // keep the broker busy, and a small window reuses warm memory.
        (kbytes, messages) = (kbytes.min(SPOOL_INFLIGHT_KBYTES), messages.min(SPOOL_INFLIGHT_MESSAGES));
    }
    config.set("queue.buffering.max.kbytes", kbytes.clamp(1, 2_097_151).to_string());
    config.set("queue.buffering.max.messages", messages.clamp(1, 2_147_483_647).to_string());
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// Describes a librdkafka config error without ever echoing a secret.
pub fn config_error(error: &KafkaError, kafka: &KafkaConfig) -> String {
    let mut text = match error {
        KafkaError::ClientConfig(_, description, key, _) => format!("kafka.properties.{key}: {description}"),
        KafkaError::ClientCreation(description) => format!("kafka.properties: {description}"),
        other => format!("kafka: {other}"),
    };
    for (key, value) in &kafka.properties {
        if is_secret(key) && !value.is_empty() {
            text = text.replace(value.as_str(), "******");
        }
    }
    text
}

/// A running producer generation.
pub struct ProducerHandle {
    mode: Arc<AtomicU8>,
    deadline: Arc<Mutex<Option<Instant>>>,
    thread: JoinHandle<()>,
}

impl ProducerHandle {
    /// Starts a producer; `create` names topics to create before producing.
    pub fn start(
        shared: Arc<Shared>,
        kafka: &KafkaConfig,
        buffer: &BufferConfig,
        create: Vec<String>,
    ) -> Result<ProducerHandle, String> {
        let mode = Arc::new(AtomicU8::new(RUN));
        // Opened here so an unusable buffer.dir fails the start itself.
        let spool = match buffer.mode {
            BufferMode::Memory => None,
            BufferMode::Disk | BufferMode::Hybrid => Some(Spool::open(&buffer.spool, shared.clone())?),
        };
        let make: MakeProducer = {
            let (client, shared, mode, spooling) = (client_config(kafka, buffer), shared.clone(), mode.clone(), spool.is_some());
            Box::new(move || client.create_with_context(Context::new(shared.clone(), mode.clone(), spooling)))
        };
        let producer = make().map_err(|e| config_error(&e, kafka))?;
        let deadline = Arc::new(Mutex::new(None));
        let admin = if create.is_empty() {
            None
        } else {
            let admin: AdminClient<DefaultClientContext> =
                client_config(kafka, buffer).create().map_err(|e| config_error(&e, kafka))?;
            Some(TopicCreator::new(admin, create, kafka.partitions, kafka.replication_factor))
        };
        let inject_panic = std::env::var_os(INJECT_PANIC_ENV).is_some() && !PANIC_INJECTED.swap(true, SeqCst);
        let spill_after = (buffer.mode == BufferMode::Hybrid).then(|| Duration::from_millis(buffer.spool.spill_after_ms));
        let overflow = buffer.overflow;
        let thread = {
            let (mode, deadline) = (mode.clone(), deadline.clone());
            std::thread::Builder::new()
                .name("kafka_bridge_producer".into())
                .spawn(move || {
                    let watched = shared.clone();
                    let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                        let renewal = Renewal::new(make);
                        if let Some(admin) = admin {
                            admin.create_until_done(&shared, &mode);
                        }
                        match spool {
                            None => run(producer, renewal, shared, mode, deadline, inject_panic),
                            Some(spool) => {
                                let options = spooler::Options { spill_after, overflow };
                                spooler::run(producer, renewal, spool, options, mode, deadline)
                            }
                        }
                    }));
                    if let Err(panic) = body {
                        report_failure(&watched, &*panic);
                    }
                })
                .map_err(|e| format!("cannot start the producer thread: {e}"))?
        };
        Ok(ProducerHandle { mode, deadline, thread })
    }

    /// Stops taking records; flushes, then hands the rest to the next
    /// producer (memory mode only: spool modes stop and restart).
    pub fn retire(self, flush_timeout: Duration) {
        self.finish(RETIRE, flush_timeout);
    }

    /// Drains the queue into Kafka until the timeout, then drops what is left
    /// (counted as `dropped_on_stop`), and joins the thread.
    pub fn stop(self, flush_timeout: Duration) {
        self.finish(STOP, flush_timeout);
    }

    fn finish(self, mode: u8, flush_timeout: Duration) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + flush_timeout);
        self.mode.store(mode, SeqCst);
        // The thread only panics on a bug; the panic has been contained there.
        let _ = self.thread.join();
    }
}

fn run(
    mut producer: BaseProducer<Context>,
    mut renewal: Renewal,
    shared: Arc<Shared>,
    mode: Arc<AtomicU8>,
    deadline: Arc<Mutex<Option<Instant>>>,
    inject_panic: bool,
) {
    let rx = shared.queue.receiver().clone();
    // Records taken from the queue that librdkafka has not taken yet.
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let mut waiter = Waiter::new();
    let mut names = TopicNames::default();
    while mode.load(SeqCst) == RUN {
        if batch.is_empty() {
            let wait = Duration::from_millis(if shared.metrics.inflight.load(Relaxed) > 0 { 5 } else { 50 });
            if take_limit(&shared, 0) == 0 || renewal.must_pause(&names) {
                poll(&producer, wait);
                renewal.poll_draining(&shared);
                continue;
            }
            batch.extend(waiter.recv(&rx, wait, |nap| poll(&producer, nap)));
        }
        if inject_panic && !(batch.is_empty() && rx.is_empty()) {
            panic!("injected by {INJECT_PANIC_ENV}");
        }
        top_up_and_hand_over(&producer, &shared, &mut names, &rx, &mut batch);
        poll_ready(&producer);
        if batch.is_empty() {
            renewal.renew_if_due(&mut producer, &mut names, false);
        }
        renewal.poll_draining(&shared);
    }

    let deadline = deadline.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(Instant::now);
    if mode.load(SeqCst) == STOP {
        // Drain what the hooks queued before they were removed.
        while Instant::now() < deadline && !(batch.is_empty() && rx.is_empty()) {
            top_up_and_hand_over(&producer, &shared, &mut names, &rx, &mut batch);
            if batch.is_empty() && !rx.is_empty() {
                // drop_oldest's window is full: wait for deliveries.
                poll(&producer, Duration::from_millis(10));
            }
        }
        let mut left = 0;
        for record in batch.drain(..).chain(rx.try_iter()) {
            shared.queue.release(record.budget_bytes());
            left += 1;
        }
        shared.metrics.dropped_on_stop.fetch_add(left, Relaxed);
    } else {
        for record in batch.drain(..) {
            let size = record.budget_bytes();
            shared.queue.release(size);
            if shared.queue.requeue(record, Duration::from_secs(5)).is_err() {
                inc(&shared.metrics.dropped_on_stop);
            }
        }
    }
    let current = Draining { names, producer };
    for old in renewal.into_draining().into_iter().chain([current]) {
        finish(old, deadline);
    }
}

/// A panic of the producer thread (a bug): status says failed and why, an
/// error line is logged, and the owning Erlang process is told, so that it
/// stops and its supervisor starts the bridge again. Hooks keep counting
/// until then; `Bridge::stop` counts what the thread left as dropped.
fn report_failure(shared: &Shared, panic: &(dyn std::any::Any + Send)) {
    let why = crate::log::panic_text(panic);
    let text = format!("kafka bridge: the Kafka producer thread failed ({why}); restarting the bridge");
    shared.status.state.store(FAILED, SeqCst);
    shared.status.set_error(text.clone());
    shared.logger.log(Level::Error, &text);
    shared.logger.report_failure(&text);
}

/// Flushes a producer until `deadline`, then takes back what it still
/// holds: through delivery(), requeued when retiring, counted as
/// dropped_on_stop when stopping.
fn finish(Draining { names, producer }: Draining, deadline: Instant) {
    flush(&producer, deadline.saturating_duration_since(Instant::now()));
    producer.purge(PurgeConfig::default().queue().inflight());
    flush(&producer, Duration::from_millis(500));
    poll(&producer, Duration::ZERO);
    // The topic handles go before the producer.
    drop(names);
}

/// Fills `batch` up to `BATCH` from the queue and hands it over; when
/// librdkafka's queue is full, waits a little for deliveries to make room.
fn top_up_and_hand_over(
    producer: &BaseProducer<Context>,
    shared: &Shared,
    names: &mut TopicNames,
    rx: &Receiver<Record>,
    batch: &mut Vec<Record>,
) {
    batch.extend(rx.try_iter().take(take_limit(shared, batch.len())));
    hand_over(producer, shared, names, batch);
    if !batch.is_empty() {
        poll(producer, Duration::from_millis(10));
    }
}

/// How many more records to take from the queue into a batch of
/// `batch_len`. `drop_oldest` can evict only from the queue, so then this
/// thread and librdkafka together hold at most a quarter of
/// `max_messages`: during an outage the rest of the budget stays where the
/// oldest can make room for the newest.
fn take_limit(shared: &Shared, batch_len: usize) -> usize {
    let room = BATCH - batch_len.min(BATCH);
    if !shared.queue.drops_oldest() {
        return room;
    }
    let window = (shared.queue.max_messages() / 4).max(1);
    let held = shared.metrics.inflight.load(Relaxed) as usize + batch_len;
    window.saturating_sub(held).min(room)
}

/// Hands `batch` to librdkafka, a run of records for the same topic at a
/// time; leaves in `batch`, in order, what librdkafka's full queue could
/// not take.
fn hand_over(producer: &BaseProducer<Context>, shared: &Shared, names: &mut TopicNames, batch: &mut Vec<Record>) {
    let mut left = Vec::new();
    let mut run: Vec<(Record, usize)> = Vec::with_capacity(batch.len());
    for record in batch.drain(..) {
        let ends_run = record.headers.is_some() || run.first().is_some_and(|(first, _)| !same_topic(&first.topic, &record.topic));
        if ends_run {
            produce_run(producer, shared, names, &mut run, |tag, produced| settle(shared, &mut left, tag, produced));
        }
        let tag = (record.budget_bytes() << 32) | (shared.millis_since_epoch(record.enqueued_at) as usize & 0xffff_ffff);
        if !left.is_empty() {
            // librdkafka is full: the rest waits, in order.
            left.push(record);
        } else if record.headers.is_some() {
            // produce_batch takes no headers: such records go one by one.
            let produced = produce(producer, shared, names, record, tag);
            settle(shared, &mut left, tag, produced);
        } else {
            run.push((record, tag));
        }
    }
    produce_run(producer, shared, names, &mut run, |tag, produced| settle(shared, &mut left, tag, produced));
    batch.append(&mut left);
}

/// Memory mode's part in what became of a record handed over.
fn settle(shared: &Shared, left: &mut Vec<Record>, tag: usize, produced: Produced) {
    match produced {
        Produced::Queued => {}
        Produced::QueueFull(record) => left.push(record),
        Produced::Refused => shared.queue.release(tag >> 32),
    }
}

fn same_topic(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overflow;

    fn record(topic: &Arc<str>, n: u8, headers: bool) -> Record {
        let headers = headers.then(|| vec![(std::borrow::Cow::Borrowed("h"), vec![n])]);
        Record { topic: topic.clone(), buf: vec![n; 8], key_len: Some(1), headers, enqueued_at: Instant::now() }
    }

    /// librdkafka takes three records; the rest come back whole and in
    /// order, whatever run (topic, headers) they were part of.
    #[test]
    fn hand_over_keeps_what_librdkafka_cannot_take_in_order() {
        let shared = Arc::new(Shared::new(BufferMode::Memory, Queue::new(100, 1 << 20, Overflow::DropNew), Logger::new(None)));
        let context = Context::new(shared.clone(), Arc::new(AtomicU8::new(RUN)), false);
        let producer: BaseProducer<Context> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("queue.buffering.max.messages", "3")
            .set_log_level(RDKafkaLogLevel::Emerg)
            .create_with_context(context)
            .unwrap();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut batch =
            vec![record(&a, 1, false), record(&b, 2, false), record(&b, 3, true), record(&a, 4, false), record(&a, 5, true), record(&b, 6, false)];
        let mut names = TopicNames::default();
        hand_over(&producer, &shared, &mut names, &mut batch);
        assert_eq!(shared.metrics.inflight.load(Relaxed), 3);
        let left: Vec<(u8, &str, bool)> = batch.iter().map(|r| (r.buf[0], &*r.topic, r.headers.is_some())).collect();
        assert_eq!(left, vec![(4, "a", false), (5, "a", true), (6, "b", false)]);
        assert!(batch.iter().all(|r| r.buf == vec![r.buf[0]; 8] && r.key() == Some(&r.buf[..1])));
        // Still full: nothing moves, nothing is lost or reordered.
        hand_over(&producer, &shared, &mut names, &mut batch);
        assert_eq!(batch.iter().map(|r| r.buf[0]).collect::<Vec<_>>(), vec![4, 5, 6]);
        drop(names);
    }
}
