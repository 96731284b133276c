//! The paced benchmark's floor: librdkafka given records at a fixed rate in
//! the bridge's own rhythm, by a thread that does nothing else. Every
//! `handover` it hands over the records due since the last hand-over with
//! `rd_kafka_produce_batch` (the values are ready, nothing is allocated or
//! copied before librdkafka) and serves the delivery reports. The CPU of
//! every thread of this process per record is what librdkafka and its
//! broker connection cost at that rate: no producer of the bridge's design
//! can cost less.

use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

use crate::raw_batch::{hand_over, hand_over_stamped, message, topic_handle};

/// What one paced run did: records delivered and CPU nanoseconds of every
/// thread of this process over the run.
pub struct Paced {
    pub records: usize,
    pub cpu_ns: u64,
    pub wall: Duration,
}

/// Sends `rate` records a second for `duration`, values cycled from
/// `values`, all with `key`, handing them over every `handover`; returns
/// once every delivery report is in. With `stamp`, every record carries
/// that Kafka timestamp, as the bridge's do by default (`timestamp =
/// publish`), and is handed over on its own.
pub fn produce(
    config: &ClientConfig,
    topic: &str,
    values: &[&[u8]],
    key: &[u8],
    rate: u64,
    duration: Duration,
    handover: Duration,
    stamp: Option<i64>,
) -> Result<Paced, String> {
    let producer: BaseProducer = config.create().map_err(|e| e.to_string())?;
    let rkt = topic_handle(&producer, topic)?;
    // Connected and the topic's metadata known before the clock starts, as
    // for the bridge, which the paced bench starts and waits for.
    producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let cpu_before = process_cpu_ns()?;
    let started = Instant::now();
    let mut batch: Vec<rd::rd_kafka_message_t> = Vec::new();
    let mut sent = 0usize;
    let mut result = Ok(());
    while started.elapsed() < duration && result.is_ok() {
        let due = (started.elapsed().as_micros() as u64 * rate / 1_000_000) as usize;
        batch.extend((sent..due).map(|n| message(values[n % values.len()], key)));
        sent = due;
        // What the queue refused stays in `batch` for the next hand-over.
        // SAFETY: the handle lives until it is destroyed after the flush
        // below, and the values and the key outlive that flush, which waits
        // for every record.
        result = unsafe { hand_over_either(&producer, rkt, &mut batch, stamp) };
        producer.poll(Duration::ZERO);
        std::thread::sleep(handover);
    }
    while !batch.is_empty() && result.is_ok() {
        // SAFETY: as above.
        result = unsafe { hand_over_either(&producer, rkt, &mut batch, stamp) };
        producer.poll(handover);
    }
    let flushed = producer.flush(Duration::from_secs(60)).map_err(|e| e.to_string());
    let wall = started.elapsed();
    let cpu_after = process_cpu_ns()?;
    // SAFETY: nothing is queued for this handle any more (flushed) or ever will be.
    unsafe { rd::rd_kafka_topic_destroy(rkt) };
    result.and(flushed).map(|()| Paced { records: sent, cpu_ns: cpu_after.saturating_sub(cpu_before), wall })
}

/// # Safety
/// As for `hand_over`.
unsafe fn hand_over_either(
    producer: &BaseProducer,
    rkt: *mut rd::rd_kafka_topic_t,
    batch: &mut Vec<rd::rd_kafka_message_t>,
    stamp: Option<i64>,
) -> Result<(), String> {
    // SAFETY: the caller's promise.
    unsafe {
        match stamp {
            Some(timestamp_ms) => hand_over_stamped(producer.client().native_ptr(), rkt, batch, timestamp_ms),
            None => hand_over(rkt, batch),
        }
    }
}

/// Nanoseconds on CPU of every thread of this process, as the paced bench
/// reads its VM's (`/proc/self/task/*/schedstat`).
fn process_cpu_ns() -> Result<u64, String> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").map_err(|e| e.to_string())? {
        let path = task.map_err(|e| e.to_string())?.path().join("schedstat");
        // A thread that exited in between has no schedstat any more.
        if let Ok(stat) = std::fs::read_to_string(path) {
            total += stat.split(' ').next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}
