//! The end-to-end benchmark's baseline: librdkafka at its own limit. The
//! same encoded values and keys the bridge sends, handed over 1024 at a
//! time with `rd_kafka_produce_batch` and without a copy (the bridge hands
//! its records over without a copy too), with the same properties.

use std::ffi::{c_void, CString};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

/// As many records per call as the bridge's producer drains per wake-up.
const BATCH: usize = 1024;
/// RD_KAFKA_PARTITION_UA: each record goes through the configured partitioner.
const UNASSIGNED_PARTITION: i32 = -1;

/// Sends `count` records, values cycled from `values` and keys from `keys`,
/// and returns the time until every delivery report is in.
pub fn produce(config: &ClientConfig, topic: &str, values: &[&[u8]], keys: &[String], count: usize) -> Result<Duration, String> {
    let producer: BaseProducer = config.create().map_err(|e| e.to_string())?;
    let rkt = topic_handle(&producer, topic)?;
    let started = Instant::now();
    let result = send_all(&producer, rkt, values, keys, count);
    let flushed = producer.flush(Duration::from_secs(120)).map_err(|e| e.to_string());
    let elapsed = started.elapsed();
    // SAFETY: nothing is queued for this handle any more (flushed) or ever will be.
    unsafe { rd::rd_kafka_topic_destroy(rkt) };
    result.and(flushed).map(|()| elapsed)
}

/// librdkafka's handle for `topic`; the caller destroys it before the
/// producer.
pub fn topic_handle(producer: &BaseProducer, topic: &str) -> Result<*mut rd::rd_kafka_topic_t, String> {
    let name = CString::new(topic).map_err(|e| e.to_string())?;
    // SAFETY: a valid client and a NUL-terminated name; the caller keeps
    // the client alive until it has destroyed the handle.
    let rkt = unsafe { rd::rd_kafka_topic_new(producer.client().native_ptr(), name.as_ptr(), std::ptr::null_mut()) };
    if rkt.is_null() {
        return Err(format!("rd_kafka_topic_new({topic}) failed"));
    }
    Ok(rkt)
}

/// A message for `rd_kafka_produce_batch` that points at `value` and `key`
/// without owning them.
pub fn message(value: &[u8], key: &[u8]) -> rd::rd_kafka_message_t {
    // SAFETY: an all-zero rd_kafka_message_t is a valid empty message.
    let mut message: rd::rd_kafka_message_t = unsafe { std::mem::zeroed() };
    message.payload = value.as_ptr() as *mut c_void;
    message.len = value.len();
    message.key = key.as_ptr() as *mut c_void;
    message.key_len = key.len();
    message
}

fn send_all(
    producer: &BaseProducer,
    rkt: *mut rd::rd_kafka_topic_t,
    values: &[&[u8]],
    keys: &[String],
    count: usize,
) -> Result<(), String> {
    let mut batch: Vec<rd::rd_kafka_message_t> = Vec::with_capacity(BATCH);
    let mut next = 0;
    while next < count || !batch.is_empty() {
        while batch.len() < BATCH && next < count {
            batch.push(message(values[next % values.len()], keys[next % keys.len()].as_bytes()));
            next += 1;
        }
        // SAFETY: the handle lives until `produce` destroys it after the
        // flush, and the values and keys outlive that flush, which waits
        // for every record.
        unsafe { hand_over(rkt, &mut batch) }?;
        producer.poll(if batch.is_empty() { Duration::ZERO } else { Duration::from_millis(1) });
    }
    Ok(())
}

/// Hands `batch` to librdkafka with `rd_kafka_produce_batch` and leaves in
/// it what librdkafka refused because its queue was full, to hand over
/// again after a poll; fails on any other refusal.
///
/// # Safety
/// `rkt` is a live topic handle, and the keys and values the messages
/// point at stay valid until every delivery report is in (msgflags 0:
/// librdkafka neither copies nor frees them).
pub unsafe fn hand_over(rkt: *mut rd::rd_kafka_topic_t, batch: &mut Vec<rd::rd_kafka_message_t>) -> Result<(), String> {
    use rd::rd_kafka_resp_err_t::{RD_KAFKA_RESP_ERR_NO_ERROR as TAKEN, RD_KAFKA_RESP_ERR__QUEUE_FULL as FULL};
    if batch.is_empty() {
        return Ok(());
    }
    // SAFETY: the caller's promise (above). librdkafka sets `err` on each
    // message it did not take.
    unsafe { rd::rd_kafka_produce_batch(rkt, UNASSIGNED_PARTITION, 0, batch.as_mut_ptr(), batch.len() as i32) };
    if let Some(failed) = batch.iter().find(|m| m.err != TAKEN && m.err != FULL) {
        return Err(format!("produce_batch: {:?}", failed.err));
    }
    batch.retain(|m| m.err == FULL);
    batch.iter_mut().for_each(|m| m.err = TAKEN);
    Ok(())
}

/// As `hand_over`, but one `rd_kafka_producev` call per record, each with
/// the Kafka timestamp `timestamp_ms`: what a record stamped with its own
/// time costs librdkafka, since `rd_kafka_produce_batch` takes none.
///
/// # Safety
/// As for `hand_over`.
pub unsafe fn hand_over_stamped(
    rk: *mut rd::rd_kafka_t,
    rkt: *mut rd::rd_kafka_topic_t,
    batch: &mut Vec<rd::rd_kafka_message_t>,
    timestamp_ms: i64,
) -> Result<(), String> {
    use rd::rd_kafka_resp_err_t::{RD_KAFKA_RESP_ERR_NO_ERROR as TAKEN, RD_KAFKA_RESP_ERR__QUEUE_FULL as FULL};
    use rd::rd_kafka_vtype_t::*;
    let mut taken = 0;
    for m in batch.iter() {
        // SAFETY: the caller's promise; flags 0, as in hand_over.
        let err = unsafe {
            rd::rd_kafka_producev(
                rk,
                RD_KAFKA_VTYPE_RKT,
                rkt,
                RD_KAFKA_VTYPE_PARTITION,
                UNASSIGNED_PARTITION,
                RD_KAFKA_VTYPE_MSGFLAGS,
                0 as std::ffi::c_int,
                RD_KAFKA_VTYPE_VALUE,
                m.payload,
                m.len,
                RD_KAFKA_VTYPE_KEY,
                m.key,
                m.key_len,
                RD_KAFKA_VTYPE_TIMESTAMP,
                timestamp_ms,
                RD_KAFKA_VTYPE_END,
            )
        };
        match err {
            TAKEN => taken += 1,
            FULL => break,
            other => return Err(format!("producev: {other:?}")),
        }
    }
    batch.drain(..taken);
    Ok(())
}
