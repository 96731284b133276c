//! The spool thread of the `disk` and `hybrid` modes.
//!
//! It moves events from the hook queue into the spool, and from the spool
//! into librdkafka, in order. Delivery reports settle spool records; a
//! segment is deleted once all of its records are settled.
//!
//! `disk`: every event is written to the spool (and synced as `buffer.fsync`
//! says) before it is handed to librdkafka.
//! `hybrid`: events go straight to librdkafka while it has room and the
//! broker is reachable; otherwise they spill to the spool, and keep going
//! there until the reader has caught up, so order is kept.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rdkafka::producer::{BaseProducer, Producer};

use crate::config::Overflow;
use crate::log::Level;
use crate::metrics::inc;
use crate::kafka::handoff::{produce, Produced, TopicNames};
use crate::kafka::in_flight::Tag;
use crate::kafka::context::Context;
use crate::kafka::fatal::{FatalWatch, Health};
use crate::kafka::delivery::Report;
use crate::kafka::polling::{poll, poll_ready};
use crate::kafka::lifecycle::AtomicLifecycle;
use crate::runtime::{ConnectionState, Shared};
use crate::queue::{Record, Waiter};
use crate::kafka::renewal::{destroy_all, Draining, Renewal};
use crate::clock::Now;
use crate::spool::{Appended, Position, Spool};

/// Records taken from the hook queue per round.
const BATCH: usize = 16 * 1024;
/// Records handed from the spool to librdkafka per round: more than a
/// round takes in, so the reader catches up after reading back from disk
/// and new records are handed over from memory again.
const FEED: usize = 4 * BATCH;

pub struct Options {
    /// `hybrid` mode: how long the broker may be unreachable before spilling.
    pub spill_after: Option<Duration>,
    pub overflow: Overflow,
}

/// Records handed to librdkafka and not yet settled, in the order sent;
/// the delivery opaque is the record's sequence number. Settled records
/// leave from the front, which commits the spool's delivered prefix.
#[derive(Default)]
struct Window {
    front_seq: usize,
    slots: VecDeque<Slot>,
    /// Bytes of spool records in librdkafka and not yet settled.
    spool_bytes: u64,
}

struct Slot {
    settled: bool,
    /// `None` for a hybrid record sent straight from memory.
    position: Option<Position>,
    enqueued_at: Instant,
    /// The record's size when it came from the spool, else 0.
    spool_bytes: u64,
}

impl Window {
    fn next_seq(&self) -> usize {
        self.front_seq + self.slots.len()
    }

    fn push(&mut self, position: Option<Position>, enqueued_at: Instant, spool_bytes: u64) {
        self.spool_bytes += spool_bytes;
        self.slots.push_back(Slot { settled: false, position, enqueued_at, spool_bytes });
    }

    fn slot(&mut self, seq: usize) -> Option<&mut Slot> {
        self.slots.get_mut(seq.checked_sub(self.front_seq)?)
    }

    /// Marks a record settled (once); returns its slot.
    fn settle(&mut self, seq: usize) -> Option<&Slot> {
        let slot = self.slots.get_mut(seq.checked_sub(self.front_seq)?)?;
        if !std::mem::replace(&mut slot.settled, true) {
            self.spool_bytes -= slot.spool_bytes;
        }
        Some(slot)
    }

    /// Pops settled records off the front, committing spool positions.
    fn advance(&mut self, spool: &mut Spool) {
        while self.slots.front().is_some_and(|s| s.settled) {
            let slot = self.slots.pop_front().expect("front");
            self.front_seq += 1;
            if let Some(position) = slot.position {
                spool.commit(position);
            }
        }
    }
}

struct SpoolThread {
    /// Before `producer`: fields drop in order, and topic handles must go first.
    names: TopicNames,
    producer: BaseProducer<Context>,
    shared: Arc<Shared>,
    spool: Spool,
    options: Options,
    window: Window,
    /// A spool record librdkafka had no room for yet.
    pending: Option<(Record, Position)>,
    /// hybrid: events go to the spool rather than straight to librdkafka.
    spilling: bool,
    unreachable_since: Option<Instant>,
    waiter: Waiter,
    renewal: Renewal,
    fatal: FatalWatch,
    /// The producer stayed fatal (see `kafka::fatal`): the loop ends and
    /// the bridge restarts, replaying the spool with a fresh producer.
    gave_up: Option<String>,
}

pub fn run(
    producer: BaseProducer<Context>,
    renewal: Renewal,
    spool: Spool,
    options: Options,
    lifecycle: Arc<AtomicLifecycle>,
    deadline: Arc<Mutex<Option<Instant>>>,
) -> Result<(), String> {
    let shared = spool.shared().clone();
    let rx = shared.queue.receiver().clone();
    if let Some(note) = &spool.replay_note {
        shared.logger.limited(Level::Info, "spool_replay", "", &format!("kafka bridge: {note}"));
    }
    let spilling = options.spill_after.is_none() || !spool.caught_up();
    let mut thread = SpoolThread {
        producer,
        shared,
        spool,
        options,
        window: Window::default(),
        pending: None,
        spilling,
        unreachable_since: None,
        // The shortest naps: the spool writes what each look takes.
        waiter: Waiter::new(Duration::ZERO),
        names: TopicNames::default(),
        renewal,
        fatal: FatalWatch::default(),
        gave_up: None,
    };
    while lifecycle.is_running() && thread.gave_up.is_none() {
        thread.round(&rx);
    }
    let deadline = deadline.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(Instant::now);
    let gave_up = thread.gave_up.take();
    thread.stop(&rx, deadline);
    gave_up.map_or(Ok(()), Err)
}

impl SpoolThread {
    fn round(&mut self, rx: &Receiver<Record>) {
        let wait = if self.pending.is_some() {
            // librdkafka is full: give deliveries time (new events still wake us).
            Duration::from_millis(10)
        } else if !self.spool.caught_up() {
            Duration::ZERO
        } else if self.shared.metrics.inflight.load(Relaxed) > 0 {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(50)
        };
        let usable = match self.fatal.check(&self.producer, &self.shared) {
            Health::Usable => true,
            // Events go to disk, and nothing is fed from it.
            Health::Holding => {
                self.spilling = true;
                false
            }
            Health::RetryNow => {
                self.gave_up = Some(format!("the Kafka producer stayed unusable: {}", self.shared.status.last_error()));
                return;
            }
        };
        let first = self.waiter.recv(rx, wait, |nap| poll(&self.producer, nap));
        self.track_reachability();
        let now = Now::get();
        for record in first.into_iter().chain(rx.try_iter().take(BATCH)) {
            self.shared.queue.release(record.budget_bytes());
            self.accept(record, now);
        }
        self.flush(false);
        if usable {
            self.feed();
        }
        if self.spilling && self.options.spill_after.is_some() && self.pending.is_none() && self.spool.caught_up()
            && !self.broker_unreachable()
        {
            self.spilling = false;
        }
        poll_ready(&self.producer);
        self.settle();
        self.spool.maintain(false);
    }

    /// Whether librdkafka may take another record (`Renewal::may_produce`;
    /// a replaced producer's records stay in the window until it reports
    /// them).
    fn producer_ready(&mut self) -> bool {
        self.renewal.may_produce(&mut self.producer, &mut self.names)
    }

    /// An event from the hooks: straight to librdkafka (hybrid, when it can)
    /// or into the spool.
    fn accept(&mut self, record: Record, now: Now) {
        if !self.spilling {
            if !self.producer_ready() {
                self.start_spilling("replaced Kafka producers are still delivering (a topic per client?)");
            } else if self.broker_unreachable() {
                self.start_spilling("the Kafka broker has been unreachable for buffer.spill_after");
            } else {
                let seq = self.window.next_seq();
                let enqueued_at = record.enqueued_at;
                match produce(&self.producer, &self.shared, &mut self.names, record, Tag::spool(seq)) {
                    Produced::Queued => return self.window.push(None, enqueued_at, 0),
                    Produced::Refused => return,
                    Produced::QueueFull(back) => {
                        self.start_spilling("the memory buffer is full");
                        return self.store(back, now);
                    }
                }
            }
        }
        self.store(record, now);
    }

    fn start_spilling(&mut self, why: &str) {
        self.spilling = true;
        let text = format!("kafka bridge: spilling events to disk: {why}");
        self.shared.logger.limited(Level::Warning, "spool_spill", "", &text);
    }

    fn track_reachability(&mut self) {
        if self.shared.status.state.load() == ConnectionState::Connected {
            self.unreachable_since = None;
        } else {
            self.unreachable_since.get_or_insert_with(Instant::now);
        }
    }

    fn broker_unreachable(&self) -> bool {
        match (self.options.spill_after, self.unreachable_since) {
            (Some(after), Some(since)) => since.elapsed() >= after,
            _ => false,
        }
    }

    /// Appends to the spool; a full spool applies `buffer.overflow`.
    fn store(&mut self, record: Record, now: Now) {
        let metrics = &self.shared.metrics;
        for _attempt in 0..4 {
            match self.spool.append(&record, now) {
                Ok(Appended::Buffered(position)) => return self.spool.offer_fresh(record, position),
                Ok(Appended::Full) if self.options.overflow == Overflow::DropOldest => {
                    match self.spool.evict_oldest_segment() {
                        Ok(Some(dropped)) => {
                            metrics.dropped_spool_full.fetch_add(dropped, Relaxed);
                            self.log_full();
                        }
                        // Every segment holds records librdkafka has: drop this one.
                        Ok(None) => break,
                        Err(error) => return self.write_failed(&error, 1),
                    }
                }
                Ok(Appended::Full) => break,
                Err(error) => return self.write_failed(&error, 1),
            }
        }
        inc(&metrics.dropped_spool_full);
        self.log_full();
    }

    fn log_full(&self) {
        let text = "kafka bridge: the spool is full (buffer.max_disk_bytes); dropping events per buffer.overflow";
        self.shared.logger.limited(Level::Error, "spool_full", "", text);
        self.shared.status.set_error(text.to_string());
    }

    fn write_failed(&self, error: &std::io::Error, lost: u64) {
        self.shared.metrics.dropped_spool_error.fetch_add(lost, Relaxed);
        let text = format!("kafka bridge: cannot write to the spool: {error}");
        self.shared.logger.limited(Level::Error, "spool_write_failed", "", &text);
        self.shared.status.set_error(text);
    }

    fn flush(&mut self, force_sync: bool) {
        if let Err(error) = self.spool.flush(force_sync) {
            // flush() has counted the records it lost.
            self.write_failed(&error, 0);
        }
    }

    /// Hands spool records to librdkafka until it is full or none are left.
    /// At most a quarter of `buffer.max_disk_bytes` is in librdkafka at a
    /// time: those records' segments cannot be evicted (librdkafka holds
    /// them only in memory), and `drop_oldest` needs older ones it can.
    fn feed(&mut self) {
        let now = Now::get();
        let max_in_flight = self.spool.max_disk_bytes() / 4;
        for _ in 0..FEED {
            if self.window.spool_bytes >= max_in_flight || !self.producer_ready() {
                return;
            }
            let Some((record, position)) = self.pending.take().or_else(|| self.spool.next(now)) else { return };
            let seq = self.window.next_seq();
            let enqueued_at = record.enqueued_at;
            let bytes = record.budget_bytes() as u64;
            match produce(&self.producer, &self.shared, &mut self.names, record, Tag::spool(seq)) {
                Produced::Queued => self.window.push(Some(position), enqueued_at, bytes),
                Produced::Refused => {
                    // Never retried: settle it so its segment can go.
                    self.window.push(Some(position), enqueued_at, bytes);
                    self.settle_one(seq, false, Instant::now());
                }
                Produced::QueueFull(back) => {
                    self.pending = Some((back, position));
                    return;
                }
            }
        }
    }

    /// Applies the delivery reports gathered by the last poll, and those
    /// of the replaced producers still draining.
    fn settle(&mut self) {
        let mut reports = self.producer.context().take_spool_reports();
        self.renewal.poll_draining(&self.shared, |old| reports.extend(old.context().take_spool_reports()));
        self.apply(reports);
    }

    fn apply(&mut self, reports: Vec<Report>) {
        let now = Instant::now();
        for report in reports {
            match report {
                Report::Settled { seq, delivered } => self.settle_one(seq, delivered, now),
                Report::Purged { seq, mut record } => {
                    // A spool record stays unsettled: it is replayed on the
                    // next start. One sent from memory is written out now.
                    if let Some(slot) = self.window.slot(seq) {
                        if slot.position.is_none() {
                            record.enqueued_at = slot.enqueued_at;
                            self.store(record, Now::get());
                            self.settle_one(seq, false, now);
                        }
                    }
                }
            }
        }
        self.window.advance(&mut self.spool);
    }

    fn settle_one(&mut self, seq: usize, delivered: bool, now: Instant) {
        let Some(slot) = self.window.settle(seq) else { return };
        if delivered {
            self.shared.metrics.latency.record(now.saturating_duration_since(slot.enqueued_at).as_millis() as u64);
        }
        if let Some(position) = slot.position {
            self.spool.settled(position);
        }
    }

    /// Writes everything the hooks queued to the spool, delivers what it
    /// can before `deadline` (while the broker is up), then takes back what
    /// librdkafka holds: spool records are replayed on the next start.
    fn stop(mut self, rx: &Receiver<Record>, deadline: Instant) {
        let queued = rx.len();
        let now = Now::get();
        for record in rx.try_iter().take(queued) {
            self.shared.queue.release(record.budget_bytes());
            self.store(record, now);
        }
        self.flush(true);
        while Instant::now() < deadline && self.shared.status.state.load() == ConnectionState::Connected {
            if self.pending.is_none() && self.spool.caught_up() && self.window.slots.is_empty() {
                break;
            }
            self.feed();
            poll(&self.producer, Duration::from_millis(10));
            self.settle();
            self.spool.maintain(false);
        }
        self.pending = None;
        // Every purged record is reported before its producer goes: a
        // hybrid record sent from memory is spooled from its report.
        let mut reports = self.producer.context().take_spool_reports();
        self.renewal.purge_all(&self.producer, |producer| reports.extend(producer.context().take_spool_reports()));
        self.apply(reports);
        self.spool.close();
        let SpoolThread { names, producer, renewal, .. } = self;
        destroy_all(renewal.into_draining().into_iter().chain([Draining { names, producer }]).collect());
    }
}
