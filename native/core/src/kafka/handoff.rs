//! Hands records to librdkafka without copying them.
//!
//! rdkafka's `BaseProducer::send` passes `RD_KAFKA_MSG_F_COPY`, so librdkafka
//! mallocs and copies every value, and the record's own buffer is freed at
//! once. Here librdkafka points into the record's buffer instead. The buffer
//! is lent (`in_flight::Lent`) until the delivery report gives it back, and
//! it is freed there. librdkafka frees its own copy-made messages at that
//! same point, so it never reads a value after its report.

use std::collections::HashSet;
use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_vtype_t::*;
use rdkafka::error::{IsError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::util::IntoOpaque;

use crate::kafka::context::Context;
use crate::kafka::in_flight::{self, Lent, Tag};
use crate::queue::{Headers, Record};
use crate::runtime::Shared;


/// Distinct topics a producer may use before it is replaced (see renewal).
pub const MAX_TOPICS: usize = 1_000;

/// RD_KAFKA_PARTITION_UA: the partitioner picks.
const PARTITION_UA: i32 = -1;


pub enum Produced {
    Queued,
    /// librdkafka's queue is full: the record comes back, to try after a poll.
    QueueFull(Record),
    /// Refused outright (too large, bad topic name), counted as failed.
    Refused,
}

/// The last topic produced to, by C name and librdkafka handle: one topic
/// is the usual case, and this saves an allocation and a lookup per record.
#[derive(Default)]
pub struct TopicNames {
    last: Option<(Arc<str>, CString, TopicHandle)>,
    /// Every topic used, for `renewal` (cleared with the producer).
    used: HashSet<Arc<str>>,
}

/// librdkafka's handle on a topic, made on first use by `produce_run`.
/// It must go before the producer it belongs to, so a `TopicNames` is
/// dropped before its producer (the memory loop drops it explicitly; the
/// spool thread declares it before its producer).
struct TopicHandle(*mut rdsys::rd_kafka_topic_t);

impl Drop for TopicHandle {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle came from rd_kafka_topic_new and is released once.
            unsafe { rdsys::rd_kafka_topic_destroy(self.0) };
        }
    }
}

impl TopicNames {
    /// How many topics were used, counted up to just past `renewal::MAX_TOPICS`.
    pub fn used(&self) -> usize {
        self.used.len()
    }

    fn c_name(&mut self, topic: &Arc<str>) -> Option<&CString> {
        self.entry(topic).map(|(_, c_name, _)| &*c_name)
    }

    fn entry(&mut self, topic: &Arc<str>) -> Option<&mut (Arc<str>, CString, TopicHandle)> {
        let fresh = match &self.last {
            Some((name, _, _)) => !Arc::ptr_eq(name, topic) && **name != **topic,
            None => true,
        };
        if fresh {
            if self.used.len() <= MAX_TOPICS {
                self.used.insert(topic.clone());
            }
            self.last = Some((topic.clone(), CString::new(topic.as_bytes()).ok()?, TopicHandle(ptr::null_mut())));
        }
        self.last.as_mut()
    }

    /// librdkafka's handle for `topic`, or None if it will not make one.
    fn handle(&mut self, producer: &BaseProducer<Context>, topic: &Arc<str>) -> Option<*mut rdsys::rd_kafka_topic_t> {
        let (_, c_name, handle) = self.entry(topic)?;
        if handle.0.is_null() {
            // SAFETY: the name is a valid C string; a null conf means the
            // producer's defaults, as rd_kafka_producev uses them.
            handle.0 = unsafe { rdsys::rd_kafka_topic_new(producer.client().native_ptr(), c_name.as_ptr(), ptr::null_mut()) };
        }
        (!handle.0.is_null()).then_some(handle.0)
    }
}

/// Produces `record` with `tag` in its delivery opaque.
pub fn produce(producer: &BaseProducer<Context>, shared: &Shared, names: &mut TopicNames, record: Record, tag: Tag) -> Produced {
    // By handle, which saves librdkafka a lookup of the name under its
    // lock per record; by name when it made no handle, so that its error
    // says why.
    let (topic_type, topic) = match names.handle(producer, &record.topic) {
        Some(handle) => (RD_KAFKA_VTYPE_RKT, handle as *const c_void),
        None => match names.c_name(&record.topic) {
            Some(name) => (RD_KAFKA_VTYPE_TOPIC, name.as_ptr() as *const c_void),
            None => {
                refused(shared, &record.topic, "the topic name contains a NUL byte");
                return Produced::Refused;
            }
        },
    };
    let Record { topic: topic_name, buf, key_len, headers, timestamp_ms, enqueued_at } = record;
    let native_headers = headers.as_ref().map_or(ptr::null_mut(), native_headers);
    let lent = Lent::new(buf, key_len);
    // SAFETY: every pointer is valid for the call; `topic` is a handle
    // librdkafka keeps a reference to, or a name it copies, as the header
    // list and the key; the value stays valid until its delivery report
    // (flags 0: no copy, no free), which `Context::delivery` takes back.
    // rdkafka 0.39's delivery callback gives `Tag::from_ptr` the opaque,
    // the inverse of `into_ptr` here; rdkafka is pinned to that exact
    // version in Cargo.toml for it.
    let error = unsafe {
        rdsys::rd_kafka_producev(
            producer.client().native_ptr(),
            topic_type,
            topic,
            RD_KAFKA_VTYPE_PARTITION,
            PARTITION_UA,
            RD_KAFKA_VTYPE_MSGFLAGS,
            0 as std::ffi::c_int,
            RD_KAFKA_VTYPE_VALUE,
            lent.value,
            lent.value_len,
            RD_KAFKA_VTYPE_KEY,
            lent.key,
            lent.key_len,
            RD_KAFKA_VTYPE_OPAQUE,
            tag.into_ptr(),
            RD_KAFKA_VTYPE_HEADERS,
            native_headers,
            // 0 is librdkafka's "now".
            RD_KAFKA_VTYPE_TIMESTAMP,
            timestamp_ms.unwrap_or(0),
            RD_KAFKA_VTYPE_END,
        )
    };
    if !error.is_error() {
        // librdkafka owns the header list now.
        shared.metrics.inflight.fetch_add(1, Relaxed);
        return Produced::Queued;
    }
    if !native_headers.is_null() {
        // SAFETY: librdkafka took nothing: the header list is ours again.
        unsafe { rdsys::rd_kafka_headers_destroy(native_headers) };
    }
    not_taken(shared, Record { topic: topic_name, buf: lent.take_back(), key_len, headers, timestamp_ms, enqueued_at }, error)
}

/// Produces `run`, records for one topic without headers or a timestamp
/// of their own (librdkafka stamps the call's time), each with
/// its tag, in one librdkafka call: `rd_kafka_producev` reads the wall and
/// the monotonic clock, looks the topic up and takes its lock for every
/// record; `rd_kafka_produce_batch` does that once per call (its
/// partitioner still reads the monotonic clock per record). `outcome`
/// hears of each record, in order.
pub fn produce_run(
    producer: &BaseProducer<Context>,
    shared: &Shared,
    names: &mut TopicNames,
    run: &mut Vec<(Record, Tag)>,
    mut outcome: impl FnMut(Tag, Produced),
) {
    let Some(topic) = run.first().map(|(record, _)| record.topic.clone()) else { return };
    let Some(handle) = names.handle(producer, &topic) else {
        // librdkafka refuses the name: produce() says why, for each record.
        for (record, tag) in run.drain(..) {
            outcome(tag, produce(producer, shared, names, record, tag));
        }
        return;
    };
    let mut messages: Vec<rdsys::rd_kafka_message_t> = run
        .iter_mut()
        .map(|(record, tag)| {
            let lent = Lent::new(std::mem::take(&mut record.buf), record.key_len);
            rdsys::rd_kafka_message_t {
                err: rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                rkt: ptr::null_mut(),
                partition: PARTITION_UA,
                payload: lent.value,
                len: lent.value_len,
                key: lent.key,
                key_len: lent.key_len,
                offset: 0,
                _private: tag.into_ptr(),
            }
        })
        .collect();
    // SAFETY: as in produce(): flags 0, so librdkafka neither copies nor
    // frees the value, which stays valid until its delivery report. It sets
    // `err` on every message it did not take.
    unsafe { rdsys::rd_kafka_produce_batch(handle, PARTITION_UA, 0, messages.as_mut_ptr(), messages.len() as std::ffi::c_int) };
    let mut queued = 0;
    for ((mut record, tag), message) in run.drain(..).zip(&messages) {
        if !message.err.is_error() {
            queued += 1;
            continue;
        }
        // SAFETY: librdkafka did not take this one: its buffer is ours again.
        record.buf = unsafe { in_flight::reclaim(message) };
        outcome(tag, not_taken(shared, record, message.err));
    }
    shared.metrics.inflight.fetch_add(queued, Relaxed);
}

/// A record librdkafka did not take: back to the caller when its queue is
/// full, else refused and counted as failed.
fn not_taken(shared: &Shared, record: Record, error: rdsys::rd_kafka_resp_err_t) -> Produced {
    let code = RDKafkaErrorCode::from(error);
    if code == RDKafkaErrorCode::QueueFull {
        return Produced::QueueFull(record);
    }
    refused(shared, &record.topic, &format!("Message production error: {code}"));
    Produced::Refused
}

fn refused(shared: &Shared, topic: &str, error: &str) {
    let text = format!("Kafka refused a record for topic {topic:?}: {error}");
    // Rate-limited per error, not per topic: a topic per client would
    // make a log line, and a limiter entry, per topic.
    shared.count_failed(topic, "kafka_record_refused", error, text);
}

/// A librdkafka header list with copies of `headers`.
fn native_headers(headers: &Headers) -> *mut rdsys::rd_kafka_headers_t {
    // SAFETY: the list is new; header_add copies each name and value.
    unsafe {
        let list = rdsys::rd_kafka_headers_new(headers.len());
        for (name, value) in headers {
            rdsys::rd_kafka_header_add(
                list,
                name.as_ptr() as *const std::ffi::c_char,
                name.len() as isize,
                value.as_ptr() as *const c_void,
                value.len() as isize,
            );
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_kept_and_checked() {
        let mut names = TopicNames::default();
        let first = names.c_name(&Arc::from("events")).unwrap().as_ptr();
        // An equal name from another Arc (a new routing) reuses the C string.
        assert_eq!(names.c_name(&Arc::from("events")).unwrap().as_ptr(), first);
        assert_eq!(names.c_name(&Arc::from("other")).unwrap().to_str(), Ok("other"));
        assert!(names.c_name(&Arc::from("bad\0name")).is_none());
        assert_eq!(names.c_name(&Arc::from("other")).unwrap().to_str(), Ok("other"));
    }
}
