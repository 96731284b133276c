//! Serving librdkafka's delivery reports from the producer thread: every
//! report that is ready, a wait for the first ones, a nap, a flush.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};

use crate::kafka::context::Context;

/// Serves what librdkafka has ready (one event, one produce response),
/// with the clock the delivery reports use read once; true if it settled
/// any record.
fn serve_one(producer: &BaseProducer<Context>) -> bool {
    let context = producer.context();
    context.begin_poll();
    producer.poll(Duration::ZERO);
    context.end_poll()
}

/// Serves every delivery report that is ready: `BaseProducer::poll` with a
/// zero timeout serves one event per call, which capped deliveries at a
/// batch per loop round. Returns whether any record was settled. A
/// token sign-in's token is refreshed here when due (`token_refresh`).
pub fn poll_ready(producer: &BaseProducer<Context>) -> bool {
    if let Some(token_refresh) = producer.context().token_refresh() {
        token_refresh.tend(producer.client().native_ptr());
    }
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

/// Sleeps for `nap`, then serves the delivery reports that came meanwhile:
/// one wake-up, where `poll` wakes every millisecond to look.
pub fn nap(producer: &BaseProducer<Context>, nap: Duration) {
    std::thread::sleep(nap);
    poll_ready(producer);
}

/// `Producer::flush` without its busy last millisecond per poll (see `poll`).
pub fn flush(producer: &BaseProducer<Context>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    // A zero-timeout flush asks librdkafka to send without lingering.
    while producer.flush(Duration::ZERO).is_err() && Instant::now() < deadline {
        poll(producer, deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(10)));
    }
}
