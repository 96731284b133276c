//! The JSON writer both formats use: an object written entry by entry
//! with constant keys, and the payload as text or base64. (Entries read
//! from Erlang terms are added by the NIF's `encode::term_entries`.)

use serde::ser::Serialize;
use serde_json::ser::Formatter;

use crate::config::PayloadEncoding;
use crate::fast::plain_text::is_plain_ascii;
use crate::json::base64_json::base64_into;

/// A JSON object written entry by entry: serde_json writes every value,
/// and the keys, which are this file's own constants, are copied as they
/// are. (serde_json's map serializer checks each key byte for escapes,
/// about a tenth of a 100 B hook.)
pub struct Object<'w, F> {
    out: &'w mut Vec<u8>,
    formatter: F,
    empty: bool,
}

impl<'w, F: Formatter + Clone> Object<'w, F> {
    pub fn new(out: &'w mut Vec<u8>, formatter: F) -> Self {
        out.push(b'{');
        Object { out, formatter, empty: true }
    }

    /// Appends `,"key":` and `value` (between quotes if `quoted`) after a
    /// single capacity check. It is inlined, so the constant key becomes a
    /// few moves of known length; and it writes through a raw cursor,
    /// because with `Vec::push` or `extend_from_slice` per piece the
    /// compiler stores and reloads the length around each one (a byte
    /// store may alias it), a chain of dependent memory operations.
    #[inline(always)]
    pub fn entry(&mut self, key: &'static str, value: &[u8], quoted: bool) {
        debug_assert!(is_plain_ascii(key.as_bytes()), "key {key:?} would need escaping");
        let room = key.len() + value.len() + 6;
        self.out.reserve(room);
        let len = self.out.len();
        let first = std::mem::replace(&mut self.empty, false);
        // SAFETY: `reserve` made room for `room` bytes after `len`, which
        // covers the most written here: a comma, the quoted key and its
        // colon (key + 3), the value and its two quotes. The sources are
        // constants and borrowed terms, never this Vec's spare capacity.
        unsafe {
            let start = self.out.as_mut_ptr().add(len);
            // The comma is always written, then written over by the key's
            // quote when this is the first entry.
            start.write(b',');
            let mut at = start.add(usize::from(!first));
            at = put(at, b"\"");
            at = put(at, key.as_bytes());
            at = put(at, if quoted { b"\":\"" } else { b"\":" });
            at = put(at, value);
            if quoted {
                at = put(at, b"\"");
            }
            self.out.set_len(len + at.offset_from(start) as usize);
        }
    }

    #[inline(always)]
    pub fn key(&mut self, key: &'static str) {
        self.entry(key, b"", false);
    }

    pub fn serialize_entry<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), serde_json::Error> {
        self.key(key);
        value.serialize(&mut serde_json::Serializer::with_formatter(&mut *self.out, self.formatter.clone()))
    }

    /// Writes `value` between quotes, as it is: the caller knows it needs
    /// no escaping.
    #[inline(always)]
    pub fn quoted_entry(&mut self, key: &'static str, value: &[u8]) {
        self.entry(key, value, true);
    }

    /// Text that needs no escaping in either format is copied between
    /// quotes; anything else goes through serde_json.
    #[inline(always)]
    pub fn str_entry(&mut self, key: &'static str, text: &str) -> Result<(), serde_json::Error> {
        if !is_plain_ascii(text.as_bytes()) {
            return self.serialize_entry(key, text);
        }
        self.quoted_entry(key, text.as_bytes());
        Ok(())
    }

    /// One of this file's constants, which need no escaping.
    #[inline(always)]
    pub fn const_entry(&mut self, key: &'static str, text: &'static str) {
        debug_assert!(is_plain_ascii(text.as_bytes()), "{text:?} would need escaping");
        self.quoted_entry(key, text.as_bytes());
    }

    #[inline(always)]
    pub fn int_entry(&mut self, key: &'static str, value: i64) {
        self.digits_entry(key, itoa::Buffer::new().format(value));
    }

    /// A number already written out (the NIF's `write_emqx` writes its timestamp so).
    #[inline(always)]
    pub fn digits_entry(&mut self, key: &'static str, digits: &str) {
        self.entry(key, digits.as_bytes(), false);
    }

    #[inline(always)]
    pub fn bool_entry(&mut self, key: &'static str, value: bool) {
        self.entry(key, if value { b"true" } else { b"false" }, false);
    }

    /// Plain text is copied and base64 encoded straight into the output;
    /// neither needs escaping.
    pub fn payload_entry(&mut self, key: &'static str, payload: &Payload) -> Result<(), serde_json::Error> {
        match *payload {
            Payload::Plain(bytes) => self.quoted_entry(key, bytes),
            Payload::Text(text) => return self.serialize_entry(key, text),
            Payload::Base64(bytes) => {
                self.key(key);
                self.out.push(b'"');
                base64_into(bytes, self.out);
                self.out.push(b'"');
            }
        }
        Ok(())
    }

    pub fn end(self) -> Result<(), serde_json::Error> {
        self.out.push(b'}');
        Ok(())
    }
}

/// A message payload as JSON: text when `auto` finds valid UTF-8, else base64.
pub enum Payload<'a> {
    /// Text that needs no escaping (checked first: it is valid UTF-8 too).
    Plain(&'a [u8]),
    Text(&'a str),
    Base64(&'a [u8]),
}

impl<'a> Payload<'a> {
    pub fn of(bytes: &'a [u8], encoding: PayloadEncoding) -> Payload<'a> {
        match encoding {
            PayloadEncoding::Auto if is_plain_ascii(bytes) => Payload::Plain(bytes),
            PayloadEncoding::Auto => std::str::from_utf8(bytes).map_or(Payload::Base64(bytes), Payload::Text),
            _ => Payload::Base64(bytes),
        }
    }

    pub fn encoding_name(&self) -> &'static str {
        match self {
            Payload::Plain(_) | Payload::Text(_) => "utf8",
            Payload::Base64(_) => "base64",
        }
    }
}


/// Copies `bytes` to `at` and returns the byte after them. Up to 32 bytes
/// (a key, a clientid, a topic) are copied with two overlapping moves
/// instead of a call to memcpy; with a constant length only one branch
/// is left.
///
/// # Safety
/// `at` must have room for `bytes`, which must not overlap it.
#[inline(always)]
pub unsafe fn put(at: *mut u8, bytes: &[u8]) -> *mut u8 {
    use std::ptr::{read_unaligned as load, write_unaligned as store};
    let (n, src) = (bytes.len(), bytes.as_ptr());
    match n {
        0 => {}
        1..=3 => {
            // First, middle and last byte: all three cover lengths 1 to 3.
            *at = *src;
            *at.add(n / 2) = *src.add(n / 2);
            *at.add(n - 1) = *src.add(n - 1);
        }
        4..=7 => {
            let (head, tail) = (load(src as *const u32), load(src.add(n - 4) as *const u32));
            store(at as *mut u32, head);
            store(at.add(n - 4) as *mut u32, tail);
        }
        8..=16 => {
            let (head, tail) = (load(src as *const u64), load(src.add(n - 8) as *const u64));
            store(at as *mut u64, head);
            store(at.add(n - 8) as *mut u64, tail);
        }
        17..=32 => {
            let (head, tail) = (load(src as *const u128), load(src.add(n - 16) as *const u128));
            store(at as *mut u128, head);
            store(at.add(n - 16) as *mut u128, tail);
        }
        _ => std::ptr::copy_nonoverlapping(src, at, n),
    }
    at.add(n)
}
