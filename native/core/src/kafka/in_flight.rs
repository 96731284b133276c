//! A record while librdkafka holds it: the delivery opaque that keeps its
//! bytes alive (librdkafka points into them, see `handoff`) until its
//! delivery report gives them back.

use std::ffi::c_void;
use std::ptr;

use crate::queue::Record;

/// A record inside librdkafka: its delivery opaque.
pub struct InFlight {
    /// The key's bytes followed by the value's; librdkafka points into it.
    /// (Not the whole `Record`: while the broker is down librdkafka holds
    /// hundreds of thousands of these, and the rest would add ~60 bytes each.)
    pub buf: Vec<u8>,
    pub key_len: Option<usize>,
    pub tag: Tag,
}

/// What a delivery report needs of a record besides its bytes, in the one
/// word the opaque has room for. Memory mode: the record's budget bytes
/// and its enqueue time in ms since the bridge's epoch, for the budget and
/// the latency histogram. Spool modes: the spool thread's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag(usize);

impl Tag {
    /// A record's budget is far below 4 GiB; the time wraps every 49 days,
    /// and latencies are taken modulo that.
    pub fn memory(budget_bytes: usize, enqueued_ms: u64) -> Tag {
        Tag((budget_bytes << 32) | (enqueued_ms as usize & 0xffff_ffff))
    }

    pub fn spool(seq: usize) -> Tag {
        Tag(seq)
    }

    pub fn budget_bytes(self) -> usize {
        self.0 >> 32
    }

    pub fn enqueued_ms(self) -> u32 {
        (self.0 & 0xffff_ffff) as u32
    }

    pub fn seq(self) -> usize {
        self.0
    }
}

impl InFlight {
    /// The key (null when there is none) and the value, as pointer and
    /// length the way librdkafka takes them; they point into `buf`.
    pub fn key_and_value(&self) -> ((*mut c_void, usize), (*mut c_void, usize)) {
        let key = match self.key_len {
            Some(n) => (self.buf.as_ptr() as *mut c_void, n),
            None => (ptr::null_mut(), 0),
        };
        let value = &self.buf[self.key_len.unwrap_or(0)..];
        (key, (value.as_ptr() as *mut c_void, value.len()))
    }

    /// The record again, for a purged message that goes back to a queue
    /// or to the spool: no copy, the buffer is moved back.
    pub fn into_record(self, message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        use rdkafka::message::{Headers as _, Message as _};
        let headers = message.headers().map(|hs| {
            hs.iter()
                .map(|h| (std::borrow::Cow::Owned(h.key.to_string()), h.value.unwrap_or_default().to_vec()))
                .collect()
        });
        Record {
            topic: message.topic().into(),
            buf: self.buf,
            key_len: self.key_len,
            headers,
            // The stamp it was handed over with, kept for the next try.
            timestamp_ms: message.timestamp().to_millis(),
            enqueued_at: std::time::Instant::now(),
        }
    }
}
