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

use crate::raw_batch::{message, topic_handle};

/// RD_KAFKA_PARTITION_UA: each record goes through the configured partitioner.
const UNASSIGNED_PARTITION: i32 = -1;

/// What one paced run did: records delivered and CPU nanoseconds of every
/// thread of this process over the run.
pub struct Paced {
    pub records: usize,
    pub cpu_ns: u64,
    pub wall: Duration,
}

/// Sends `rate` records a second for `duration`, values cycled from
/// `values`, all with `key`, handing them over every `handover`; returns
/// once every delivery report is in.
pub fn produce(
    config: &ClientConfig,
    topic: &str,
    values: &[&[u8]],
    key: &[u8],
    rate: u64,
    duration: Duration,
    handover: Duration,
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
        sent = sent.max(due);
        if !batch.is_empty() {
            // SAFETY: msgflags 0 (neither copy nor free): the values and the
            // key outlive the flush below, which waits for every record.
            unsafe { rd::rd_kafka_produce_batch(rkt, UNASSIGNED_PARTITION, 0, batch.as_mut_ptr(), batch.len() as i32) };
            result = keep_refused(&mut batch);
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(handover);
    }
    while !batch.is_empty() && result.is_ok() {
        // SAFETY: as above.
        unsafe { rd::rd_kafka_produce_batch(rkt, UNASSIGNED_PARTITION, 0, batch.as_mut_ptr(), batch.len() as i32) };
        result = keep_refused(&mut batch);
        producer.poll(handover);
    }
    let flushed = producer.flush(Duration::from_secs(60)).map_err(|e| e.to_string());
    let wall = started.elapsed();
    let cpu_after = process_cpu_ns()?;
    // SAFETY: nothing is queued for this handle any more (flushed) or ever will be.
    unsafe { rd::rd_kafka_topic_destroy(rkt) };
    result.and(flushed).map(|()| Paced { records: sent, cpu_ns: cpu_after.saturating_sub(cpu_before), wall })
}

/// Leaves in `batch` what librdkafka refused because its queue was full
/// (a rate above what the broker takes; sent at the next hand-over) and
/// fails on any other refusal.
fn keep_refused(batch: &mut Vec<rd::rd_kafka_message_t>) -> Result<(), String> {
    use rd::rd_kafka_resp_err_t::{RD_KAFKA_RESP_ERR_NO_ERROR as TAKEN, RD_KAFKA_RESP_ERR__QUEUE_FULL as FULL};
    if let Some(failed) = batch.iter().find(|m| m.err != TAKEN && m.err != FULL) {
        return Err(format!("produce_batch: {:?}", failed.err));
    }
    batch.retain(|m| m.err == FULL);
    batch.iter_mut().for_each(|m| m.err = TAKEN);
    Ok(())
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
