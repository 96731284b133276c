//! The memory-mode delivery path against librdkafka's mock cluster: a
//! producer generation drains the queue into "Kafka" and accounts for every
//! record, with no broker process. (The suites in test/ do the same
//! against Apache Kafka, through the VM.)

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;

use crate::config::{self, Config};
use crate::kafka::producer::ProducerHandle;
use crate::log::Logger;
use crate::queue::{Pushed, Queue, Record};
use crate::runtime::{ConnectionState, Shared};

const TOPIC: &str = "mock_topic";

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 3, 1).unwrap();
    mock
}

fn config(mock: &MockCluster<'static, DefaultProducerContext>) -> Config {
    config::parse(&json!({
        "kafka": {"bootstrap_servers": mock.bootstrap_servers(), "properties": {"linger.ms": "1"}},
        "buffer": {"max_messages": 10_000}
    }))
    .unwrap()
}

/// The shared state with `n` records queued, as the hooks would leave it.
fn queued(config: &Config, n: u32) -> Arc<Shared> {
    queued_to(config, n, &[TOPIC])
}

/// `n` records queued to `topics` in turn.
fn queued_to(config: &Config, n: u32, topics: &[&str]) -> Arc<Shared> {
    let buffer = &config.buffer;
    let queue = Queue::new(buffer.max_messages, buffer.max_bytes, buffer.overflow);
    let shared = Arc::new(Shared::new(buffer.mode, queue, Logger::new(None)));
    let topics: Vec<Arc<str>> = topics.iter().map(|&t| t.into()).collect();
    for i in 0..n {
        let topic = &topics[i as usize % topics.len()];
        let key = format!("client{}", i % 7);
        let mut buf = key.clone().into_bytes();
        buf.extend_from_slice(format!("{{\"n\":{i}}}").as_bytes());
        let record = Record { topic: topic.clone(), buf, key_len: Some(key.len()), headers: None, timestamp_ms: None, enqueued_at: Instant::now() };
        assert!(matches!(shared.queue.push(record, &shared.metrics), Pushed::Ok), "record {i}");
    }
    shared
}

fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every record queued is delivered once; the budget and librdkafka's
/// share of it come back to zero; the latency histogram saw each one.
#[test]
fn every_queued_record_is_delivered_and_released() {
    let mock = cluster();
    let config = config(&mock);
    let shared = queued(&config, 5000);
    let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, Vec::new()).unwrap();
    let metrics = &shared.metrics;
    wait_until("5000 delivered", Duration::from_secs(30), || metrics.delivered.load(Relaxed) == 5000);
    producer.stop(Duration::from_secs(5));
    assert_eq!(metrics.failed.load(Relaxed), 0);
    assert_eq!(metrics.dropped_on_stop.load(Relaxed), 0);
    assert_eq!(metrics.inflight.load(Relaxed), 0);
    assert_eq!((shared.queue.held(), shared.queue.budget_used()), (0, 0));
    assert_eq!(shared.status.state.load(), ConnectionState::Connected);
    assert!(shared.status.last_delivery_ms.load(Relaxed) > 0);
    assert!(metrics.latency.quantile(0.99) > 0);
}

/// Deliveries are counted per topic, the topics of one delivery report
/// batch told apart (the tally finds a topic by librdkafka's handle).
#[test]
fn deliveries_are_counted_per_topic() {
    let mock = cluster();
    mock.create_topic("mock_other", 3, 1).unwrap();
    let config = config(&mock);
    let shared = queued_to(&config, 3000, &[TOPIC, "mock_other", TOPIC]);
    let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, Vec::new()).unwrap();
    let metrics = &shared.metrics;
    wait_until("3000 delivered", Duration::from_secs(30), || metrics.delivered.load(Relaxed) == 3000);
    producer.stop(Duration::from_secs(5));
    let snapshot = metrics.per_topic_snapshot();
    assert_eq!(snapshot.rows, vec![("mock_other".to_string(), 1000, 0), (TOPIC.to_string(), 2000, 0)]);
    assert_eq!(snapshot.other, (0, 0));
}

/// A Produce request the broker refuses for good fails its records, which
/// are counted as failed, never lost: delivered + failed is what was queued.
#[test]
fn refused_records_are_counted_failed() {
    let mock = cluster();
    mock.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED]);
    let config = config(&mock);
    let shared = queued(&config, 2000);
    let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, Vec::new()).unwrap();
    let metrics = &shared.metrics;
    let settled = || metrics.delivered.load(Relaxed) + metrics.failed.load(Relaxed);
    wait_until("2000 settled", Duration::from_secs(30), || settled() == 2000);
    producer.stop(Duration::from_secs(5));
    assert!(metrics.failed.load(Relaxed) > 0, "the refused request failed its records");
    assert_eq!(settled(), 2000);
    assert!(shared.status.last_error().contains("delivery to Kafka topic \"mock_topic\" failed"));
    assert_eq!((shared.queue.held(), shared.queue.budget_used()), (0, 0));
}

/// Retriable errors are retried: nothing is failed or lost.
#[test]
fn retriable_errors_lose_nothing() {
    let mock = cluster();
    let retriable = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
    mock.request_errors(RDKafkaApiKey::Produce, &[retriable; 5]);
    let config = config(&mock);
    let shared = queued(&config, 2000);
    let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, Vec::new()).unwrap();
    let metrics = &shared.metrics;
    wait_until("2000 delivered", Duration::from_secs(30), || metrics.delivered.load(Relaxed) == 2000);
    producer.stop(Duration::from_secs(5));
    assert_eq!(metrics.failed.load(Relaxed), 0);
}

/// With the broker down, stop waits out buffer.flush_timeout and counts
/// what it could not deliver as dropped_on_stop: nothing goes uncounted.
#[test]
fn stop_with_the_broker_down_counts_what_is_left() {
    let mock = cluster();
    mock.broker_down(1).unwrap();
    let config = config(&mock);
    let shared = queued(&config, 300);
    let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, Vec::new()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    producer.stop(Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5), "stop is bounded by the flush timeout");
    let metrics = &shared.metrics;
    assert_eq!(metrics.delivered.load(Relaxed), 0);
    assert_eq!(metrics.dropped_on_stop.load(Relaxed), 300);
    assert_eq!((shared.queue.held(), shared.queue.budget_used()), (0, 0));
}

/// librdkafka's own statistics reach `status()`: a leader that refuses
/// every write with NOT_ENOUGH_REPLICAS (retried for ever) is named after
/// 5 s, and once it accepts again the view is empty and everything
/// arrives. (cluster_SUITE sees brokers down and frozen on Apache Kafka.)
#[test]
fn a_leader_refusing_writes_is_named_in_status() {
    let mock = cluster();
    let refusals = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 10_000];
    mock.request_errors(RDKafkaApiKey::Produce, &refusals);
    let config = config(&mock);
    let shared = queued(&config, 100);
    let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, Vec::new()).unwrap();
    let waiting = || shared.status.cluster().partitions_waiting;
    wait_until("a partition named", Duration::from_secs(20), || !waiting().is_empty());
    assert!(waiting()[0].contains("none acknowledged for"), "{:?}", waiting());
    assert_eq!(shared.metrics.delivered.load(Relaxed), 0);
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    wait_until("100 delivered", Duration::from_secs(30), || shared.metrics.delivered.load(Relaxed) == 100);
    wait_until("the view cleared", Duration::from_secs(5), || shared.status.cluster() == Default::default());
    producer.stop(Duration::from_secs(5));
    assert_eq!(shared.metrics.failed.load(Relaxed), 0);
}
