//! The spool's record codec. A record on disk is
//! `[body length: u32 LE][CRC32C of body: u32 LE][body]`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use crate::clock::Now;
use crate::queue::{Headers, Record};

/// The length and CRC before each body.
pub const HEADER_BYTES: u64 = 8;
pub type Header = [u8; HEADER_BYTES as usize];
/// Larger lengths can only come from a corrupted header.
pub const MAX_BODY_BYTES: u32 = 256 << 20;
const NO_KEY: u32 = u32::MAX;
/// Set in the enqueue time when a Kafka timestamp follows it. Unix
/// milliseconds stay far below this bit, so spools written before records
/// had timestamps read as they did.
const HAS_TIMESTAMP: u64 = 1 << 63;

/// Body: enqueue time (unix ms, u64, `HAS_TIMESTAMP` set when the Kafka
/// timestamp follows), the Kafka timestamp (unix ms, i64) if so, topic
/// (u16 length), key (u32 length, `NO_KEY` for none), headers (u16 count;
/// u16 name length, name, u32 value length, value), then the value to the
/// end.
pub fn encode_record(record: &Record, enqueued_unix_ms: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES as usize]);
    match record.timestamp_ms {
        Some(timestamp) => {
            out.extend_from_slice(&(enqueued_unix_ms | HAS_TIMESTAMP).to_le_bytes());
            out.extend_from_slice(&timestamp.to_le_bytes());
        }
        None => out.extend_from_slice(&(enqueued_unix_ms & !HAS_TIMESTAMP).to_le_bytes()),
    }
    out.extend_from_slice(&(record.topic.len() as u16).to_le_bytes());
    out.extend_from_slice(record.topic.as_bytes());
    match record.key() {
        Some(key) => {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
        }
        None => out.extend_from_slice(&NO_KEY.to_le_bytes()),
    }
    let headers = record.headers.as_deref().unwrap_or_default();
    out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(record.value());
    let body = &out[start + HEADER_BYTES as usize..];
    let length = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(body).to_le_bytes();
    out[start..start + 4].copy_from_slice(&length);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

pub fn decode_record(body: &[u8], now: Now) -> Option<Record> {
    let mut rest = body;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        rest = tail;
        Some(head)
    };
    let enqueued_field = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let timestamp_ms = match enqueued_field & HAS_TIMESTAMP {
        0 => None,
        _ => Some(i64::from_le_bytes(take(8)?.try_into().ok()?)),
    };
    let enqueued_ms = enqueued_field & !HAS_TIMESTAMP;
    let topic_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let topic: Arc<str> = std::str::from_utf8(take(topic_len)?).ok()?.into();
    let key_len = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let key = if key_len == NO_KEY { None } else { Some(take(key_len as usize)?) };
    let header_count = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let mut headers: Headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let name_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(name_len)?).ok()?.to_string();
        let value_len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        headers.push((name.into(), take(value_len)?.to_vec()));
    }
    let value = rest;
    let mut buf = Vec::with_capacity(key.map_or(0, <[u8]>::len) + value.len());
    buf.extend_from_slice(key.unwrap_or_default());
    buf.extend_from_slice(value);
    Some(Record {
        topic,
        buf,
        key_len: key.map(<[u8]>::len),
        headers: (header_count > 0).then_some(headers),
        timestamp_ms,
        enqueued_at: now.instant_of(enqueued_ms),
    })
}

/// A header's body length and CRC32C.
pub fn parse_header(header: &Header) -> (u32, u32) {
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    (u32::from_le_bytes([l0, l1, l2, l3]), u32::from_le_bytes([c0, c1, c2, c3]))
}

/// Counts the records between `from` and `to` in a segment file (for
/// `drop_oldest` accounting); a torn tail counts as one.
pub fn count_records(path: &Path, from: u64, to: u64) -> u64 {
    let Ok(mut file) = File::open(path) else { return 0 };
    let (mut offset, mut count) = (from, 0);
    let mut header: Header = [0; HEADER_BYTES as usize];
    while offset < to {
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_exact(&mut header).is_err() {
            return count + 1;
        }
        let (length, _) = parse_header(&header);
        offset += HEADER_BYTES + length as u64;
        count += 1;
    }
    count
}
