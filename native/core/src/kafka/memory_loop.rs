//! Memory mode's producer loop: drains the queue into librdkafka in
//! batches, a run of records for one topic per call.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rdkafka::producer::{BaseProducer, Producer};

use crate::kafka::context::Context;
use crate::kafka::fatal::{FatalWatch, Health};
use crate::kafka::polling::{self, flush, poll, poll_ready};
use crate::kafka::handoff::{produce, produce_run, Produced, TopicNames};
use crate::kafka::in_flight::Tag;
use crate::kafka::lifecycle::{AtomicLifecycle, Lifecycle};
use crate::kafka::renewal::{destroy_all, Draining, Renewal};
use crate::metrics::inc;
use crate::queue::{Record, Waiter};
use crate::runtime::Shared;

/// Records handed to librdkafka between two polls.
const BATCH: usize = 1024;

pub fn run(
    mut producer: BaseProducer<Context>,
    mut renewal: Renewal,
    shared: Arc<Shared>,
    lifecycle: Arc<AtomicLifecycle>,
    deadline: Arc<Mutex<Option<Instant>>>,
    nap: Duration,
    // A test's injected panic: what injected it.
    inject_panic: Option<&'static str>,
) {
    let rx = shared.queue.receiver().clone();
    // Records taken from the queue that librdkafka has not taken yet.
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let mut waiter = Waiter::new(nap);
    let mut names = TopicNames::default();
    let mut fatal = FatalWatch::default();
    while lifecycle.is_running() {
        match fatal.check(&producer, &shared) {
            Health::Usable => {}
            // Records wait in the queue and `batch`, within the budget.
            Health::Holding => {
                poll(&producer, Duration::from_millis(50));
                renewal.poll_draining(&shared, |_| {});
                continue;
            }
            Health::RetryNow => renewal.replace_fatal(&mut producer, &mut names),
        }
        if batch.is_empty() {
            // Deliveries are served once per nap, as records are handed over.
            let wait = if shared.metrics.inflight.load(Relaxed) > 0 { nap } else { Duration::from_millis(50) };
            if take_limit(&shared, 0) == 0 || renewal.must_pause(&names) {
                poll(&producer, wait);
                renewal.poll_draining(&shared, |_| {});
                continue;
            }
            batch.extend(waiter.recv(&rx, wait, |nap| polling::nap(&producer, nap)));
        }
        if let Some(why) = inject_panic.filter(|_| !(batch.is_empty() && rx.is_empty())) {
            panic!("injected by {why}");
        }
        top_up_and_hand_over(&producer, &shared, &mut names, &rx, &mut batch);
        poll_ready(&producer);
        if batch.is_empty() {
            renewal.renew_if_due(&mut producer, &mut names);
        }
        renewal.poll_draining(&shared, |_| {});
    }

    let read_deadline = || deadline.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(Instant::now);
    if lifecycle.load() == Lifecycle::Stop {
        let deadline = read_deadline();
        // Drain what the hooks queued before they were removed.
        while Instant::now() < deadline && !(batch.is_empty() && rx.is_empty()) {
            // A producer past its topics is replaced here too: each new
            // topic costs it more, and its destruction with them.
            if !renewal.may_produce(&mut producer, &mut names) {
                poll(&producer, Duration::from_millis(10));
                renewal.poll_draining(&shared, |_| {});
                continue;
            }
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
        // Retiring: the reconfiguration that began this returns now (see
        // `ProducerHandle::begin_retire`).
        lifecycle.note_stopped_taking();
        for record in batch.drain(..) {
            let size = record.budget_bytes();
            shared.queue.release(size);
            if shared.queue.requeue(record, Duration::from_secs(5)).is_err() {
                inc(&shared.metrics.dropped_on_stop);
            }
        }
    }
    finish(Draining { names, producer }, renewal, read_deadline);
}

/// Flushes the producers until the deadline, then takes back what they
/// still hold (`Renewal::purge_all`): through delivery(), requeued when
/// retiring, counted as dropped_on_stop when stopping. The deadline is
/// read again as this goes: a retirement runs on after the reconfiguration
/// that began it, and the bridge's stop may bring it closer
/// (`ProducerHandle::stop_retiring`).
fn finish(current: Draining, renewal: Renewal, deadline: impl Fn() -> Instant) {
    for producer in std::iter::once(&current.producer).chain(renewal.draining()) {
        loop {
            let left = deadline().saturating_duration_since(Instant::now());
            if left.is_zero() || producer.in_flight_count() == 0 {
                break;
            }
            flush(producer, left.min(Duration::from_millis(100)));
        }
    }
    renewal.purge_all(&current.producer, |_| {});
    destroy_all(renewal.into_draining().into_iter().chain([current]).collect());
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
    let mut run: Vec<(Record, Tag)> = Vec::with_capacity(batch.len());
    for record in batch.drain(..) {
        let alone = record.headers.is_some() || record.timestamp_ms.is_some();
        let ends_run = alone || run.first().is_some_and(|(first, _)| !same_topic(&first.topic, &record.topic));
        if ends_run {
            produce_run(producer, shared, names, &mut run, |tag, produced| settle(shared, &mut left, tag, produced));
        }
        let tag = Tag::memory(record.budget_bytes(), shared.millis_since_epoch(record.enqueued_at));
        if !left.is_empty() {
            // librdkafka is full: the rest waits, in order.
            left.push(record);
        } else if alone {
            // produce_batch takes no headers or timestamps: such records go one by one.
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
fn settle(shared: &Shared, left: &mut Vec<Record>, tag: Tag, produced: Produced) {
    match produced {
        Produced::Queued => {}
        Produced::QueueFull(record) => left.push(record),
        Produced::Refused => shared.queue.release(tag.budget_bytes()),
    }
}

fn same_topic(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::delivery::{Deliveries, MemoryDeliveries};
    use crate::config::{BufferMode, Overflow};
    use crate::log::Logger;
    use crate::queue::Queue;
    use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

    fn record(topic: &Arc<str>, n: u8, headers: bool) -> Record {
        let headers = headers.then(|| vec![(std::borrow::Cow::Borrowed("h"), vec![n])]);
        Record { topic: topic.clone(), buf: vec![n; 8], key_len: Some(1), headers, timestamp_ms: None, enqueued_at: Instant::now() }
    }

    /// librdkafka takes three records; the rest come back whole and in
    /// order, whatever run (topic, headers) they were part of.
    #[test]
    fn hand_over_keeps_what_librdkafka_cannot_take_in_order() {
        let shared = Arc::new(Shared::new(BufferMode::Memory, Queue::new(100, 1 << 20, Overflow::DropNew), Logger::new(None)));
        let lifecycle = Arc::new(AtomicLifecycle::new(Lifecycle::Run));
        let context = Context::new(shared.clone(), Deliveries::Memory(MemoryDeliveries { lifecycle }), None);
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
