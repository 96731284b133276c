//! A record while librdkafka holds it, with nothing allocated for it.
//!
//! librdkafka points into the record's buffer (see `handoff`) until the
//! record's delivery report. The buffer is lent as a boxed slice, so its
//! allocation is exactly as long as its bytes, and the report rebuilds it
//! from the value's address and the key's and value's lengths, which
//! librdkafka hands back as they were given. The opaque's one word carries
//! the record's `Tag`. (A boxed opaque per record cost an allocation and a
//! free on the producer thread, and 48 bytes per record librdkafka holds.)

use std::ffi::c_void;
use std::ptr;

use rdkafka::bindings as rdsys;
use rdkafka::util::IntoOpaque;

use crate::queue::Record;

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

/// The tag is the delivery opaque itself: a number, never followed.
impl IntoOpaque for Tag {
    fn into_ptr(self) -> *mut c_void {
        self.0 as *mut c_void
    }

    unsafe fn from_ptr(ptr: *mut c_void) -> Self {
        Tag(ptr as usize)
    }
}

/// A record's key and value as librdkafka takes them, pointing into its
/// buffer, which this owns until `take_back` or a delivery report.
pub struct Lent {
    /// Null when the record has no key.
    pub key: *mut c_void,
    pub key_len: usize,
    pub value: *mut c_void,
    pub value_len: usize,
}

impl Lent {
    /// Lends `buf`, the key's bytes (`key_len` of them, if any) followed
    /// by the value's.
    pub fn new(buf: Vec<u8>, key_len: Option<usize>) -> Lent {
        // Exactly as long as its bytes, so that the length alone frees it.
        let bytes: *mut [u8] = Box::into_raw(buf.into_boxed_slice());
        let start = bytes as *mut u8;
        // A key is never longer than its record; bounded anyway, so that a
        // wrong length cannot point past the buffer.
        let key_bytes = key_len.unwrap_or(0).min(bytes.len());
        Lent {
            key: if key_len.is_some() { start as *mut c_void } else { ptr::null_mut() },
            key_len: key_bytes,
            // SAFETY: at most one past the end of the buffer.
            value: unsafe { start.add(key_bytes) } as *mut c_void,
            value_len: bytes.len() - key_bytes,
        }
    }

    /// The buffer again, when librdkafka did not take the record.
    pub fn take_back(self) -> Vec<u8> {
        // SAFETY: `value` and the lengths are as `new` made them.
        unsafe { rebuild(self.value, self.key_len, self.value_len) }
    }
}

/// The buffer of the record `message` reports on. librdkafka copies keys
/// but points at values (flags 0), so the buffer starts `key_len` bytes
/// before the value.
///
/// SAFETY: `message` is the delivery report (or the not-taken entry of a
/// batch) of a record lent by `Lent::new`, and its buffer is taken back
/// once.
pub unsafe fn reclaim(message: &rdsys::rd_kafka_message_t) -> Vec<u8> {
    rebuild(message.payload, message.key_len, message.len)
}

/// SAFETY: `value`, `key_len` and `value_len` describe a buffer lent by
/// `Lent::new`, not yet rebuilt.
unsafe fn rebuild(value: *mut c_void, key_len: usize, value_len: usize) -> Vec<u8> {
    let len = key_len + value_len;
    if len == 0 {
        // An empty boxed slice owns no allocation.
        return Vec::new();
    }
    let start = (value as *mut u8).sub(key_len);
    Box::from_raw(ptr::slice_from_raw_parts_mut(start, len)).into_vec()
}

/// The record again, for a purged message that goes back to a queue or to
/// the spool: no copy, its buffer `buf` is moved back.
pub fn into_record(buf: Vec<u8>, message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    use rdkafka::message::{Headers as _, Message as _};
    let headers = message.headers().map(|hs| {
        hs.iter()
            .map(|h| (std::borrow::Cow::Owned(h.key.to_string()), h.value.unwrap_or_default().to_vec()))
            .collect()
    });
    Record {
        topic: message.topic().into(),
        key_len: message.key().map(<[u8]>::len),
        buf,
        headers,
        // The stamp it was handed over with, kept for the next try.
        timestamp_ms: message.timestamp().to_millis(),
        enqueued_at: std::time::Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a report gives back: librdkafka's copy of the key elsewhere,
    /// and the value where it was lent.
    fn report_of(lent: &Lent, key_copy: &[u8]) -> rdsys::rd_kafka_message_t {
        rdsys::rd_kafka_message_t {
            err: rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            rkt: ptr::null_mut(),
            partition: 0,
            payload: lent.value,
            len: lent.value_len,
            key: if lent.key.is_null() { ptr::null_mut() } else { key_copy.as_ptr() as *mut c_void },
            key_len: lent.key_len,
            offset: 0,
            _private: ptr::null_mut(),
        }
    }

    #[test]
    fn a_lent_buffer_comes_back_whole() {
        let cases: [(&[u8], Option<usize>); 6] =
            [(b"", None), (b"", Some(0)), (b"key", Some(3)), (b"keyvalue", Some(3)), (b"value", None), (b"value", Some(0))];
        for (bytes, key_len) in cases {
            let mut buf = Vec::with_capacity(bytes.len() + 100);
            buf.extend_from_slice(bytes);
            let lent = Lent::new(buf, key_len);
            assert_eq!(lent.key.is_null(), key_len.is_none());
            assert_eq!(lent.key_len + lent.value_len, bytes.len());
            let key_copy = bytes[..lent.key_len].to_vec();
            let back = unsafe { reclaim(&report_of(&lent, &key_copy)) };
            assert_eq!(back, bytes, "{key_len:?}");
            assert_eq!(Lent::new(back, key_len).take_back(), bytes);
        }
    }

    #[test]
    fn a_key_length_past_the_record_stays_inside_it() {
        let lent = Lent::new(b"ab".to_vec(), Some(5));
        assert_eq!((lent.key_len, lent.value_len), (2, 0));
        assert_eq!(lent.take_back(), b"ab");
    }

    #[test]
    fn a_tag_is_its_own_opaque() {
        for tag in [Tag::spool(0), Tag::spool(usize::MAX), Tag::memory(4096, 123_456)] {
            assert_eq!(unsafe { Tag::from_ptr(tag.into_ptr()) }, tag);
        }
    }
}
