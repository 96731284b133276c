//! Encodes a decoded event as the Kafka record's value (and headers).
//!
//! Both formats stream straight into the record's buffer through serde_json's
//! serializer; no intermediate `Value` tree is built on the hot path.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use rustler::types::map::MapIterator;
use rustler::{Term, TermType};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::ser::{CompactFormatter, Formatter};

use crate::config::{Format, PayloadEncoding};
use crate::event::{Event, EventKind, Message};
use crate::peerhost::{self, Ipv4Text};
use crate::plain_text::is_plain_ascii;
use crate::terms;

pub mod atoms {
    rustler::atoms! {
        clientid, username, peerhost, sockport, is_bridge, proto_name, proto_ver,
        keepalive, clean_start, expiry_interval, connected_at, disconnected_at,
        qos, retain, properties,
        user_property = "User-Property",
    }
}

/// Kafka headers of one record.
pub type Headers = Vec<(Cow<'static, str>, Vec<u8>)>;

/// What the encoder needs besides the event.
pub struct EncodeOptions<'o> {
    pub format: Format,
    pub payload_encoding: PayloadEncoding,
    pub user_properties_headers: bool,
    pub node: &'o str,
}

/// Appends the record value for `event` to `out`; returns its headers.
pub fn encode(event: &Event, options: &EncodeOptions, out: &mut Vec<u8>) -> Result<Option<Headers>, String> {
    let mut headers: Option<Headers> = None;
    match (&event.message, options.payload_encoding) {
        (Some(message), PayloadEncoding::Raw) => {
            out.extend_from_slice(message.payload);
            headers = Some(raw_headers(event, message, options.node));
        }
        _ => match options.format {
            Format::Emqx => write_emqx(event, options, Object::new(out, CompactFormatter)).map_err(|e| e.to_string())?,
            Format::Legacy => write_legacy(event, options, Object::new(out, MochiFormatter)).map_err(|e| e.to_string())?,
        },
    }
    if options.user_properties_headers {
        if let Some(message) = &event.message {
            let user_headers = user_properties(message);
            if !user_headers.is_empty() {
                headers.get_or_insert_with(Vec::new).extend(user_headers);
            }
        }
    }
    Ok(headers)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn message_timestamp(message: &Message) -> i64 {
    message.timestamp().decode::<i64>().unwrap_or_else(|_| now_ms())
}

/// A field of an optional map (`None`, which is null, when the map or key is absent).
fn field(map: Option<Term<'_>>, key: rustler::Atom) -> Option<Term<'_>> {
    map.and_then(|m| terms::map_get(m, key))
}

/// A JSON object written entry by entry: serde_json writes every value,
/// and the keys, which are this file's own constants, are copied as they
/// are. (serde_json's map serializer checks each key byte for escapes,
/// about a tenth of a 100 B hook.)
struct Object<'w, F> {
    out: &'w mut Vec<u8>,
    formatter: F,
    empty: bool,
}

impl<'w, F: Formatter + Clone> Object<'w, F> {
    fn new(out: &'w mut Vec<u8>, formatter: F) -> Self {
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
    fn entry(&mut self, key: &'static str, value: &[u8], quoted: bool) {
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
    fn key(&mut self, key: &'static str) {
        self.entry(key, b"", false);
    }

    fn serialize_entry<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), serde_json::Error> {
        self.key(key);
        value.serialize(&mut serde_json::Serializer::with_formatter(&mut *self.out, self.formatter.clone()))
    }

    /// Writes `value` between quotes, as it is: the caller knows it needs
    /// no escaping.
    #[inline(always)]
    fn quoted_entry(&mut self, key: &'static str, value: &[u8]) {
        self.entry(key, value, true);
    }

    /// Text that needs no escaping in either format is copied between
    /// quotes; anything else goes through serde_json.
    #[inline(always)]
    fn str_entry(&mut self, key: &'static str, text: &str) -> Result<(), serde_json::Error> {
        if !is_plain_ascii(text.as_bytes()) {
            return self.serialize_entry(key, text);
        }
        self.quoted_entry(key, text.as_bytes());
        Ok(())
    }

    /// One of this file's constants, which need no escaping.
    #[inline(always)]
    fn const_entry(&mut self, key: &'static str, text: &'static str) {
        debug_assert!(is_plain_ascii(text.as_bytes()), "{text:?} would need escaping");
        self.quoted_entry(key, text.as_bytes());
    }

    #[inline(always)]
    fn int_entry(&mut self, key: &'static str, value: i64) {
        self.digits_entry(key, itoa::Buffer::new().format(value));
    }

    /// A number already written out (see `write_emqx`'s timestamp).
    #[inline(always)]
    fn digits_entry(&mut self, key: &'static str, digits: &str) {
        self.entry(key, digits.as_bytes(), false);
    }

    #[inline(always)]
    fn bool_entry(&mut self, key: &'static str, value: bool) {
        self.entry(key, if value { b"true" } else { b"false" }, false);
    }

    /// A term as JSON, with the usual binary (a clientid, a username) on the
    /// plain-text path.
    #[inline(always)]
    fn term_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        match term.and_then(terms::binary) {
            Some(bytes) if is_plain_ascii(bytes) => {
                self.quoted_entry(key, bytes);
                Ok(())
            }
            _ => self.serialize_entry(key, &TermJson(term)),
        }
    }

    /// An integer term of milliseconds as whole seconds (as `div 1000`);
    /// anything else as `term_entry`.
    fn seconds_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        match term.map(|t| t.decode::<i64>()) {
            Some(Ok(ms)) => {
                self.int_entry(key, ms / 1000);
                Ok(())
            }
            _ => self.term_entry(key, term),
        }
    }

    /// An integer term (a QoS, a port) as it is; anything else as `term_entry`.
    fn int_term_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        match term.map(|t| t.decode::<i64>()) {
            Some(Ok(value)) => {
                self.int_entry(key, value);
                Ok(())
            }
            _ => self.term_entry(key, term),
        }
    }

    /// An IPv4 address tuple (the usual peerhost) as dotted-quad text;
    /// anything else as `term_entry`.
    fn address_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        match term.and_then(peerhost::ipv4_text) {
            Some(text) => {
                self.quoted_entry(key, text.as_str().as_bytes());
                Ok(())
            }
            None => self.term_entry(key, term),
        }
    }

    /// Plain text is copied and base64 encoded straight into the output;
    /// neither needs escaping.
    fn payload_entry(&mut self, key: &'static str, payload: &Payload) -> Result<(), serde_json::Error> {
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

    fn end(self) -> Result<(), serde_json::Error> {
        self.out.push(b'}');
        Ok(())
    }
}

fn write_emqx<F: Formatter + Clone>(event: &Event, options: &EncodeOptions, mut map: Object<'_, F>) -> Result<(), serde_json::Error> {
    map.const_entry("event", event.kind.hook_point());
    let client = event.client_info;
    let timestamp = match &event.message {
        Some(message) => message_timestamp(message),
        None => now_ms(),
    };
    // Message events write it twice (publish_received_at and timestamp).
    let mut timestamp_digits = itoa::Buffer::new();
    let timestamp_digits = timestamp_digits.format(timestamp);
    match event.kind {
        EventKind::ClientConnected | EventKind::ClientDisconnected => {
            let conn = event.conn_info;
            map.term_entry("clientid", field(client, atoms::clientid()))?;
            map.term_entry("username", field(client, atoms::username()))?;
            map.address_entry("peerhost", field(client, atoms::peerhost()))?;
            if event.kind == EventKind::ClientConnected {
                map.int_term_entry("sockport", field(client, atoms::sockport()))?;
                map.term_entry("proto_name", field(conn, atoms::proto_name()))?;
                map.term_entry("proto_ver", field(conn, atoms::proto_ver()))?;
                map.term_entry("keepalive", field(conn, atoms::keepalive()))?;
                map.term_entry("clean_start", field(conn, atoms::clean_start()))?;
                // ConnInfo holds milliseconds; the rule engine reports seconds.
                map.seconds_entry("expiry_interval", field(conn, atoms::expiry_interval()))?;
                map.term_entry("connected_at", field(conn, atoms::connected_at()))?;
                map.term_entry("is_bridge", field(client, atoms::is_bridge()))?;
            } else {
                map.serialize_entry("reason", &ReasonText(event.reason))?;
                let at = conn.and_then(|c| terms::map_get(c, atoms::disconnected_at()));
                match at.filter(|t| t.is_integer()) {
                    Some(at) => map.serialize_entry("disconnected_at", &TermJson(Some(at)))?,
                    None => map.serialize_entry("disconnected_at", &timestamp)?,
                }
            }
        }
        EventKind::SessionSubscribed | EventKind::SessionUnsubscribed => {
            map.term_entry("clientid", field(client, atoms::clientid()))?;
            map.term_entry("username", field(client, atoms::username()))?;
            map.address_entry("peerhost", field(client, atoms::peerhost()))?;
            map.serialize_entry("topic", &event.sub_topic)?;
            map.term_entry("qos", field(event.sub_opts.filter(|o| o.is_map()), atoms::qos()))?;
        }
        _ => {
            let message = event.message.as_ref().expect("message events carry a message");
            let headers = Some(message.headers()).filter(|h| h.is_map());
            let mut id = [0u8; 32];
            let id_len = hex_into(message.id, &mut id);
            map.quoted_entry("id", &id[..id_len]);
            if client.is_some() {
                // delivered / acked: the receiver, then the publisher.
                map.term_entry("clientid", field(client, atoms::clientid()))?;
                map.term_entry("username", field(client, atoms::username()))?;
                map.term_entry("from_clientid", Some(message.from()))?;
                map.term_entry("from_username", field(headers, atoms::username()))?;
            } else {
                map.term_entry("clientid", Some(message.from()))?;
                map.term_entry("username", field(headers, atoms::username()))?;
            }
            map.str_entry("topic", message.topic)?;
            map.int_term_entry("qos", Some(message.qos()))?;
            let retain = terms::map_get(message.flags(), atoms::retain()).and_then(terms::as_bool).unwrap_or(false);
            map.bool_entry("retain", retain);
            let payload = Payload::of(message, options.payload_encoding);
            map.payload_entry("payload", &payload)?;
            map.const_entry("payload_encoding", payload.encoding_name());
            map.address_entry("peerhost", field(headers, atoms::peerhost()))?;
            map.serialize_entry("pub_props", &PubProps(headers.and_then(|h| terms::map_get(h, atoms::properties()))))?;
            map.digits_entry("publish_received_at", timestamp_digits);
            if event.kind == EventKind::MessageDropped {
                map.serialize_entry("reason", &ReasonText(event.reason))?;
            }
        }
    }
    map.digits_entry("timestamp", timestamp_digits);
    map.str_entry("node", options.node)?;
    map.end()
}

/// The seed plugin's (emqttd_plugin_kafka_bridge, mochijson2) field order and names.
fn write_legacy<F: Formatter + Clone>(event: &Event, options: &EncodeOptions, mut map: Object<'_, F>) -> Result<(), serde_json::Error> {
    let clientid = event.clientid();
    let seconds = event.message.as_ref().map(message_timestamp).unwrap_or_else(now_ms) / 1000;
    match event.kind {
        EventKind::ClientConnected => {
            map.serialize_entry("type", "connected")?;
            map.serialize_entry("clientid", &clientid)?;
        }
        EventKind::ClientDisconnected => {
            map.serialize_entry("type", "disconnected")?;
            map.serialize_entry("clientid", &clientid)?;
            map.serialize_entry("reason", &ReasonText(event.reason))?;
        }
        EventKind::SessionSubscribed | EventKind::SessionUnsubscribed => {
            let kind = if event.kind == EventKind::SessionSubscribed { "subscribed" } else { "unsubscribed" };
            map.str_entry("type", kind)?;
            map.serialize_entry("client_id", &clientid)?;
            map.serialize_entry("topic", &event.sub_topic)?;
        }
        _ => {
            let message = event.message.as_ref().expect("message events carry a message");
            let kind = match event.kind {
                EventKind::MessagePublish => "published",
                EventKind::MessageDelivered => "delivered",
                EventKind::MessageAcked => "acked",
                _ => "dropped",
            };
            map.str_entry("type", kind)?;
            map.serialize_entry("client_id", &clientid)?;
            if event.client_info.is_some() {
                map.term_entry("from", Some(message.from()))?;
            }
            map.str_entry("topic", message.topic)?;
            let payload = Payload::of(message, options.payload_encoding);
            map.payload_entry("payload", &payload)?;
            map.serialize_entry("qos", &TermJson(Some(message.qos())))?;
            if event.kind == EventKind::MessageDropped {
                map.serialize_entry("reason", &ReasonText(event.reason))?;
            }
            if let Payload::Base64(_) = payload {
                // The seed plugin crashed on binary payloads; we say what we did instead.
                map.str_entry("payload_encoding", payload.encoding_name())?;
            }
        }
    }
    map.str_entry("cluster_node", options.node)?;
    map.serialize_entry("ts", &seconds)?;
    map.end()
}

fn raw_headers(event: &Event, message: &Message, node: &str) -> Headers {
    let mut id = [0u8; 32];
    let id_len = hex_into(message.id, &mut id);
    let header = |name: &'static str, value: Vec<u8>| (Cow::Borrowed(name), value);
    vec![
        header("event", event.kind.hook_point().as_bytes().to_vec()),
        header("clientid", event.clientid().unwrap_or_default().as_bytes().to_vec()),
        header("topic", message.topic.as_bytes().to_vec()),
        header("qos", message.qos().decode::<i64>().unwrap_or(0).to_string().into_bytes()),
        header("id", id[..id_len].to_vec()),
        header("timestamp", message_timestamp(message).to_string().into_bytes()),
        header("node", node.as_bytes().to_vec()),
    ]
}

/// MQTT 5 User-Properties, as Kafka headers (names may repeat, as in MQTT).
fn user_properties(message: &Message) -> Headers {
    let mut out = Vec::new();
    let props = Some(message.headers())
        .filter(|h| h.is_map())
        .and_then(|h| terms::map_get(h, atoms::properties()))
        .filter(|p| p.is_map())
        .and_then(|p| terms::map_get(p, atoms::user_property()));
    if let Some(list) = props.and_then(terms::list) {
        for pair in list {
            if let Some([k, v]) = terms::tuple_elements::<2>(pair) {
                if let (Some(k), Some(v)) = (terms::binary(k), terms::binary(v)) {
                    out.push((Cow::Owned(String::from_utf8_lossy(k).into_owned()), v.to_vec()));
                }
            }
        }
    }
    out
}

/// Writes `bytes` as lowercase hex into `out`, returning the length written.
fn hex_into(bytes: &[u8], out: &mut [u8; 32]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(16);
    for (i, b) in bytes[..n].iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    2 * n
}

/// A message payload as JSON: text when `auto` finds valid UTF-8, else base64.
enum Payload<'a> {
    /// Text that needs no escaping (checked first: it is valid UTF-8 too).
    Plain(&'a [u8]),
    Text(&'a str),
    Base64(&'a [u8]),
}

impl<'a> Payload<'a> {
    fn of(message: &'a Message, encoding: PayloadEncoding) -> Payload<'a> {
        Payload::of_bytes(message.payload, encoding)
    }

    fn of_bytes(bytes: &'a [u8], encoding: PayloadEncoding) -> Payload<'a> {
        match encoding {
            PayloadEncoding::Auto if is_plain_ascii(bytes) => Payload::Plain(bytes),
            PayloadEncoding::Auto => std::str::from_utf8(bytes).map_or(Payload::Base64(bytes), Payload::Text),
            _ => Payload::Base64(bytes),
        }
    }

    fn encoding_name(&self) -> &'static str {
        match self {
            Payload::Plain(_) | Payload::Text(_) => "utf8",
            Payload::Base64(_) => "base64",
        }
    }
}

/// A value written verbatim: serde_json's `raw_value` protocol, the one
/// `RawValue` serializes with, without a `Box<RawValue>` per value. The
/// tests check the output, so a serde_json change cannot go unnoticed.
struct RawJson<'a>(&'a str);

const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut raw = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        raw.serialize_field(RAW_VALUE_TOKEN, self.0)?;
        raw.end()
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
unsafe fn put(at: *mut u8, bytes: &[u8]) -> *mut u8 {
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

/// Appends the base64 of `bytes` to `out`, with no intermediate buffer.
fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// Base64 never needs escaping: encoded straight into the quoted text.
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut quoted = Vec::with_capacity(self.0.len().div_ceil(3) * 4 + 2);
        quoted.push(b'"');
        base64_into(self.0, &mut quoted);
        quoted.push(b'"');
        RawJson(std::str::from_utf8(&quoted).unwrap_or_default()).serialize(s)
    }
}

/// A disconnect or drop reason as text: atoms by name, anything else printed.
struct ReasonText<'a>(Option<Term<'a>>);

impl Serialize for ReasonText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(t) => KeyText(t).serialize(s),
        }
    }
}

/// MQTT 5 publish properties: a map, with `User-Property` pairs as an object
/// (the shape EMQX's rule engine uses).
struct PubProps<'a>(Option<Term<'a>>);

impl Serialize for PubProps<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The usual empty map without creating a map iterator.
        match self.0.filter(|p| p.map_size().is_ok_and(|n| n > 0)) {
            None => s.serialize_map(Some(0))?.end(),
            Some(props) => TermJson(Some(props)).serialize(s),
        }
    }
}

/// Any Erlang term as JSON. `undefined` is null, binaries are strings
/// (base64 when not UTF-8), inet tuples are addresses, proplists are objects.
/// A term nested deeper than `terms::MAX_TERM_DEPTH` is an error, so the
/// walk stays far from the end of the scheduler's stack.
pub struct TermJson<'a>(pub Option<Term<'a>>);

impl Serialize for TermJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(term) => TermAt { term, depth: 0 }.serialize(s),
        }
    }
}

/// A term `depth` levels below the field being written.
struct TermAt<'a> {
    term: Term<'a>,
    depth: usize,
}

impl<'a> TermAt<'a> {
    fn child(&self, term: Term<'a>) -> TermAt<'a> {
        TermAt { term, depth: self.depth + 1 }
    }
}

impl Serialize for TermAt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.depth > terms::MAX_TERM_DEPTH {
            return Err(too_deep());
        }
        let term = self.term;
        match term.get_type() {
            TermType::Atom => match terms::as_bool(term) {
                Some(b) => s.serialize_bool(b),
                None if terms::is_undefined(term) => s.serialize_none(),
                None => s.serialize_str(&term.atom_to_string().unwrap_or_default()),
            },
            TermType::Integer => match term.decode::<i64>() {
                Ok(i) => s.serialize_i64(i),
                Err(_) => match term.decode::<u64>() {
                    Ok(u) => s.serialize_u64(u),
                    Err(_) => PrintedTerm(term).serialize(s),
                },
            },
            TermType::Float => s.serialize_f64(term.decode::<f64>().unwrap_or(0.0)),
            TermType::Binary => {
                let bytes = terms::binary(term).unwrap_or_default();
                match std::str::from_utf8(bytes) {
                    Ok(text) => s.serialize_str(text),
                    Err(_) => Base64(bytes).serialize(s),
                }
            }
            TermType::Map => {
                let mut map = s.serialize_map(None)?;
                for (k, v) in MapIterator::new(term).into_iter().flatten() {
                    map.serialize_entry(&KeyText(k), &self.child(v))?;
                }
                map.end()
            }
            TermType::List => {
                // An improper list (`[1|2]`) is written as Erlang prints it.
                let Some(items) = terms::list(term) else { return PrintedTerm(term).serialize(s) };
                let pairs: Option<Vec<[Term; 2]>> = items.iter().map(|t| terms::tuple_elements::<2>(*t)).collect();
                match pairs {
                    Some(pairs) if !pairs.is_empty() => {
                        let mut map = s.serialize_map(Some(pairs.len()))?;
                        for [k, v] in pairs {
                            map.serialize_entry(&KeyText(k), &self.child(v))?;
                        }
                        map.end()
                    }
                    _ => {
                        let mut seq = s.serialize_seq(Some(items.len()))?;
                        for item in items {
                            seq.serialize_element(&self.child(item))?;
                        }
                        seq.end()
                    }
                }
            }
            TermType::Tuple => {
                if let Some(ip) = terms::ip_addr(term) {
                    return match ip {
                        // The common peerhost: no formatting machinery.
                        std::net::IpAddr::V4(v4) => s.serialize_str(Ipv4Text::new(v4.octets()).as_str()),
                        std::net::IpAddr::V6(_) => s.collect_str(&ip),
                    };
                }
                if let Some([ip, port]) = terms::tuple_elements::<2>(term) {
                    if let (Some(ip), Ok(port)) = (terms::ip_addr(ip), port.decode::<u16>()) {
                        return s.collect_str(&std::net::SocketAddr::new(ip, port));
                    }
                }
                let items = terms::tuple_slice(term).unwrap_or_default();
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for raw in items {
                    // SAFETY: each element belongs to the tuple, a term of its env.
                    seq.serialize_element(&self.child(unsafe { Term::new(term.get_env(), *raw) }))?;
                }
                seq.end()
            }
            _ => PrintedTerm(term).serialize(s),
        }
    }
}

fn too_deep<E: serde::ser::Error>() -> E {
    E::custom(format_args!("a term nested deeper than {} levels, or too large to print", terms::MAX_TERM_DEPTH))
}

/// A term as the text Erlang prints for it; an error when it is too large
/// to print on a scheduler (see `terms::printed`).
struct PrintedTerm<'a>(Term<'a>);

impl Serialize for PrintedTerm<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&terms::printed(self.0).ok_or_else(too_deep)?)
    }
}

/// A map key as text: atoms and binaries as they are, anything else printed.
struct KeyText<'a>(Term<'a>);

impl Serialize for KeyText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match terms::text(self.0) {
            Some(text) => s.serialize_str(&text),
            None => PrintedTerm(self.0).serialize(s),
        }
    }
}

/// serde_json output escaped the way mochijson2 escapes: every character
/// from U+007F up as a lowercase `\uXXXX` (surrogate pairs above U+FFFF).
#[derive(Clone)]
pub struct MochiFormatter;

impl Formatter for MochiFormatter {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (c as u32) < 0x7f {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{:04x}", unit)?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mochi_escapes_non_ascii_lowercase() {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, MochiFormatter);
        "a\"é\u{7f}\n😀/".serialize(&mut ser).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"\u00e9\u007f\n\ud83d\ude00/""#);
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the text (any Unicode, controls, quotes), both formats'
        /// string output is valid JSON that reads back to the same text.
        #[test]
        fn strings_always_encode_to_valid_json(text in any::<String>()) {
            let mut emqx = Vec::new();
            let mut ser = serde_json::Serializer::new(&mut emqx);
            let mut map = ser.serialize_map(None).unwrap();
            map.serialize_entry(&text, &text).unwrap();
            SerializeMap::end(map).unwrap();
            let mut legacy = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(&mut legacy, MochiFormatter);
            let mut map = ser.serialize_map(None).unwrap();
            map.serialize_entry(&text, &text).unwrap();
            SerializeMap::end(map).unwrap();
            prop_assert!(legacy.iter().all(|b| *b < 0x80), "legacy output is ASCII");
            for out in [emqx, legacy] {
                let back: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(back.get(&text), Some(&serde_json::Value::String(text.clone())));
            }
        }

        /// Any bytes as a base64 payload read back byte-exact.
        #[test]
        fn base64_payloads_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let out = serde_json::to_vec(&Base64(&bytes)).unwrap();
            let text: String = serde_json::from_slice(&out).unwrap();
            use base64::Engine;
            prop_assert_eq!(STANDARD.decode(text).unwrap(), bytes);
        }
    }

    /// What `Object` writes: the same bytes serde_json's own map writes,
    /// in both formats, on the plain-text path and off it.
    fn object_json<F: Formatter + Clone>(formatter: F, text: &str, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut object = Object::new(&mut out, formatter);
        object.str_entry("text", text).unwrap();
        object.payload_entry("payload", &Payload::of_bytes(text.as_bytes(), PayloadEncoding::Auto)).unwrap();
        object.payload_entry("base64", &Payload::of_bytes(bytes, PayloadEncoding::Base64)).unwrap();
        object.serialize_entry("n", &42).unwrap();
        object.end().unwrap();
        out
    }

    fn serde_json_map<F: Formatter>(formatter: F, text: &str, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        let mut map = ser.serialize_map(None).unwrap();
        map.serialize_entry("text", text).unwrap();
        map.serialize_entry("payload", text).unwrap();
        use base64::Engine;
        map.serialize_entry("base64", &STANDARD.encode(bytes)).unwrap();
        map.serialize_entry("n", &42).unwrap();
        SerializeMap::end(map).unwrap();
        out
    }

    #[test]
    fn objects_match_serde_json_maps() {
        let plain = "sensor reading 42, ok; ".repeat(10);
        for text in [plain.as_str(), "", "needs \"escaping\" here", "caf\u{e9}", "tab\there", "\u{7f}"] {
            for bytes in [&b""[..], b"\x00\xff\xfe", b"abcd"] {
                assert_eq!(object_json(CompactFormatter, text, bytes), serde_json_map(CompactFormatter, text, bytes));
                assert_eq!(object_json(MochiFormatter, text, bytes), serde_json_map(MochiFormatter, text, bytes));
            }
        }
        assert!(is_plain_ascii(plain.as_bytes()));
        assert!(!is_plain_ascii(b"tab\there"));
        assert!(!is_plain_ascii("caf\u{e9}".as_bytes()));
        assert!(!is_plain_ascii(b"\x7f"));
    }

    #[test]
    fn put_copies_every_length_and_nothing_else() {
        let source: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut buf = vec![0u8; 48];
            let base = buf.as_mut_ptr();
            // SAFETY: 3 + 40 bytes fit in 48; the source is another Vec.
            let end = unsafe { put(base.add(3), &source[..n]) };
            assert_eq!(end as usize - base as usize, 3 + n);
            assert_eq!(&buf[3..3 + n], &source[..n], "length {n}");
            assert!(buf[..3].iter().chain(&buf[3 + n..]).all(|&b| b == 0), "length {n} wrote outside");
        }
    }

    #[test]
    fn hex_ids() {
        let mut buf = [0u8; 32];
        let n = hex_into(&[0x00, 0xab, 0x10], &mut buf);
        assert_eq!(&buf[..n], b"00ab10");
    }
}
