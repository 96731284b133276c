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
use serde_json::ser::Formatter;

use crate::config::{Format, PayloadEncoding};
use crate::event::{Event, EventKind, Message};
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
            out.extend_from_slice(message.payload.as_slice());
            headers = Some(raw_headers(event, message, options.node));
        }
        _ => match options.format {
            Format::Emqx => {
                let mut ser = serde_json::Serializer::new(out);
                write_emqx(event, options, &mut ser).map_err(|e| e.to_string())?;
            }
            Format::Legacy => {
                let mut ser = serde_json::Serializer::with_formatter(out, MochiFormatter);
                write_legacy(event, options, &mut ser).map_err(|e| e.to_string())?;
            }
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
    message.timestamp.decode::<i64>().unwrap_or_else(|_| now_ms())
}

/// A field of an optional map as JSON (null when the map or key is absent).
fn field(map: Option<Term<'_>>, key: rustler::Atom) -> TermJson<'_> {
    TermJson(map.and_then(|m| terms::map_get(m, key)))
}

type Json<'w, F> = serde_json::Serializer<&'w mut Vec<u8>, F>;

fn write_emqx<F: Formatter>(event: &Event, options: &EncodeOptions, ser: &mut Json<'_, F>) -> Result<(), serde_json::Error> {
    let mut map = ser.serialize_map(None)?;
    map.serialize_entry("event", event.kind.hook_point())?;
    let client = event.client_info;
    let timestamp = match &event.message {
        Some(message) => message_timestamp(message),
        None => now_ms(),
    };
    match event.kind {
        EventKind::ClientConnected | EventKind::ClientDisconnected => {
            let conn = event.conn_info;
            map.serialize_entry("clientid", &field(client, atoms::clientid()))?;
            map.serialize_entry("username", &field(client, atoms::username()))?;
            map.serialize_entry("peerhost", &field(client, atoms::peerhost()))?;
            if event.kind == EventKind::ClientConnected {
                map.serialize_entry("sockport", &field(client, atoms::sockport()))?;
                map.serialize_entry("proto_name", &field(conn, atoms::proto_name()))?;
                map.serialize_entry("proto_ver", &field(conn, atoms::proto_ver()))?;
                map.serialize_entry("keepalive", &field(conn, atoms::keepalive()))?;
                map.serialize_entry("clean_start", &field(conn, atoms::clean_start()))?;
                map.serialize_entry("expiry_interval", &field(conn, atoms::expiry_interval()))?;
                map.serialize_entry("connected_at", &field(conn, atoms::connected_at()))?;
                map.serialize_entry("is_bridge", &field(client, atoms::is_bridge()))?;
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
            map.serialize_entry("clientid", &field(client, atoms::clientid()))?;
            map.serialize_entry("username", &field(client, atoms::username()))?;
            map.serialize_entry("peerhost", &field(client, atoms::peerhost()))?;
            map.serialize_entry("topic", &event.sub_topic)?;
            map.serialize_entry("qos", &field(event.sub_opts.filter(|o| o.is_map()), atoms::qos()))?;
        }
        _ => {
            let message = event.message.as_ref().expect("message events carry a message");
            let headers = Some(message.headers).filter(|h| h.is_map());
            map.serialize_entry("id", &HexId(message.id))?;
            if client.is_some() {
                // delivered / acked: the receiver, then the publisher.
                map.serialize_entry("clientid", &field(client, atoms::clientid()))?;
                map.serialize_entry("username", &field(client, atoms::username()))?;
                map.serialize_entry("from_clientid", &TermJson(Some(message.from)))?;
                map.serialize_entry("from_username", &field(headers, atoms::username()))?;
            } else {
                map.serialize_entry("clientid", &TermJson(Some(message.from)))?;
                map.serialize_entry("username", &field(headers, atoms::username()))?;
            }
            map.serialize_entry("topic", message.topic)?;
            map.serialize_entry("qos", &TermJson(Some(message.qos)))?;
            let retain = Some(message.flags).filter(|f| f.is_map()).and_then(|f| terms::map_get(f, atoms::retain()));
            map.serialize_entry("retain", &retain.and_then(terms::as_bool).unwrap_or(false))?;
            let payload = Payload::of(message, options.payload_encoding);
            map.serialize_entry("payload", &payload)?;
            map.serialize_entry("payload_encoding", payload.encoding_name())?;
            map.serialize_entry("peerhost", &field(headers, atoms::peerhost()))?;
            map.serialize_entry("pub_props", &PubProps(headers.and_then(|h| terms::map_get(h, atoms::properties()))))?;
            map.serialize_entry("publish_received_at", &timestamp)?;
            if event.kind == EventKind::MessageDropped {
                map.serialize_entry("reason", &ReasonText(event.reason))?;
            }
        }
    }
    map.serialize_entry("timestamp", &timestamp)?;
    map.serialize_entry("node", options.node)?;
    SerializeMap::end(map)
}

/// The seed plugin's (emqttd_plugin_kafka_bridge, mochijson2) field order and names.
fn write_legacy<F: Formatter>(event: &Event, options: &EncodeOptions, ser: &mut Json<'_, F>) -> Result<(), serde_json::Error> {
    let mut map = ser.serialize_map(None)?;
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
            map.serialize_entry("type", kind)?;
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
            map.serialize_entry("type", kind)?;
            map.serialize_entry("client_id", &clientid)?;
            if event.client_info.is_some() {
                map.serialize_entry("from", &TermJson(Some(message.from)))?;
            }
            map.serialize_entry("topic", message.topic)?;
            let payload = Payload::of(message, options.payload_encoding);
            map.serialize_entry("payload", &payload)?;
            map.serialize_entry("qos", &TermJson(Some(message.qos)))?;
            if event.kind == EventKind::MessageDropped {
                map.serialize_entry("reason", &ReasonText(event.reason))?;
            }
            if let Payload::Base64(_) = payload {
                // The seed plugin crashed on binary payloads; we say what we did instead.
                map.serialize_entry("payload_encoding", payload.encoding_name())?;
            }
        }
    }
    map.serialize_entry("cluster_node", options.node)?;
    map.serialize_entry("ts", &seconds)?;
    SerializeMap::end(map)
}

fn raw_headers(event: &Event, message: &Message, node: &str) -> Headers {
    let mut id = [0u8; 32];
    let id_len = hex_into(message.id, &mut id);
    let header = |name: &'static str, value: Vec<u8>| (Cow::Borrowed(name), value);
    vec![
        header("event", event.kind.hook_point().as_bytes().to_vec()),
        header("clientid", event.clientid().unwrap_or_default().as_bytes().to_vec()),
        header("topic", message.topic.as_bytes().to_vec()),
        header("qos", message.qos.decode::<i64>().unwrap_or(0).to_string().into_bytes()),
        header("id", id[..id_len].to_vec()),
        header("timestamp", message_timestamp(message).to_string().into_bytes()),
        header("node", node.as_bytes().to_vec()),
    ]
}

/// MQTT 5 User-Properties, as Kafka headers (names may repeat, as in MQTT).
fn user_properties(message: &Message) -> Headers {
    let mut out = Vec::new();
    let props = Some(message.headers)
        .filter(|h| h.is_map())
        .and_then(|h| terms::map_get(h, atoms::properties()))
        .filter(|p| p.is_map())
        .and_then(|p| terms::map_get(p, atoms::user_property()));
    if let Some(Ok(list)) = props.map(|p| p.decode::<Vec<Term>>()) {
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

struct HexId<'a>(&'a [u8]);

impl Serialize for HexId<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        let n = hex_into(self.0, &mut buf);
        s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default())
    }
}

/// A message payload as JSON: text when `auto` finds valid UTF-8, else base64.
enum Payload<'a> {
    Text(&'a str),
    Base64(&'a [u8]),
}

impl<'a> Payload<'a> {
    fn of(message: &'a Message, encoding: PayloadEncoding) -> Payload<'a> {
        let bytes = message.payload.as_slice();
        let text = match encoding {
            PayloadEncoding::Auto => std::str::from_utf8(bytes).ok(),
            _ => None,
        };
        text.map_or(Payload::Base64(bytes), Payload::Text)
    }

    fn encoding_name(&self) -> &'static str {
        match self {
            Payload::Text(_) => "utf8",
            Payload::Base64(_) => "base64",
        }
    }
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // serde_json escapes byte by byte; a payload that needs no
            // escaping (checked several bytes at a time) is copied as is.
            Payload::Text(text) if text.len() >= 64 && is_plain_ascii(text.as_bytes()) => {
                let mut quoted = String::with_capacity(text.len() + 2);
                quoted.push('"');
                quoted.push_str(text);
                quoted.push('"');
                RawJson(&quoted).serialize(s)
            }
            Payload::Text(text) => s.serialize_str(text),
            Payload::Base64(bytes) => Base64(bytes).serialize(s),
        }
    }
}

/// Printable ASCII other than `"` and `\`: the same text in JSON, in both
/// formats. No early exit inside a chunk, so the compiler vectorises it.
fn is_plain_ascii(bytes: &[u8]) -> bool {
    bytes.chunks(32).all(|chunk| {
        !chunk.iter().fold(false, |bad, &b| bad | !(0x20..0x7f).contains(&b) | (b == b'"') | (b == b'\\'))
    })
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

/// Base64 never needs escaping: encoded straight into the quoted text.
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let mut quoted = String::with_capacity(self.0.len().div_ceil(3) * 4 + 2);
        quoted.push('"');
        STANDARD.encode_string(self.0, &mut quoted);
        quoted.push('"');
        RawJson(&quoted).serialize(s)
    }
}

/// A disconnect or drop reason as text: atoms by name, anything else printed.
struct ReasonText<'a>(Option<Term<'a>>);

impl Serialize for ReasonText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(t) => match terms::text(t) {
                Some(text) => s.serialize_str(&text),
                None => s.collect_str(&format_args!("{t:?}")),
            },
        }
    }
}

/// MQTT 5 publish properties: a map, with `User-Property` pairs as an object
/// (the shape EMQX's rule engine uses).
struct PubProps<'a>(Option<Term<'a>>);

impl Serialize for PubProps<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.filter(|p| p.is_map()) {
            None => s.serialize_map(Some(0))?.end(),
            Some(props) => TermJson(Some(props)).serialize(s),
        }
    }
}

/// Any Erlang term as JSON. `undefined` is null, binaries are strings
/// (base64 when not UTF-8), inet tuples are addresses, proplists are objects.
pub struct TermJson<'a>(pub Option<Term<'a>>);

/// Dotted-quad text of an IPv4 address, written into `buf`.
fn ipv4_text(octets: [u8; 4], buf: &mut [u8; 15]) -> &str {
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

impl Serialize for TermJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(term) = self.0 else { return s.serialize_none() };
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
                    Err(_) => s.collect_str(&format_args!("{term:?}")),
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
                    map.serialize_entry(&KeyText(k), &TermJson(Some(v)))?;
                }
                map.end()
            }
            TermType::List => {
                let items: Vec<Term> = term.decode().unwrap_or_default();
                let pairs: Option<Vec<[Term; 2]>> = items.iter().map(|t| terms::tuple_elements::<2>(*t)).collect();
                match pairs {
                    Some(pairs) if !pairs.is_empty() => {
                        let mut map = s.serialize_map(Some(pairs.len()))?;
                        for [k, v] in pairs {
                            map.serialize_entry(&KeyText(k), &TermJson(Some(v)))?;
                        }
                        map.end()
                    }
                    _ => {
                        let mut seq = s.serialize_seq(Some(items.len()))?;
                        for item in items {
                            seq.serialize_element(&TermJson(Some(item)))?;
                        }
                        seq.end()
                    }
                }
            }
            TermType::Tuple => {
                if let Some(ip) = terms::ip_addr(term) {
                    return match ip {
                        // The common peerhost: no formatting machinery.
                        std::net::IpAddr::V4(v4) => s.serialize_str(ipv4_text(v4.octets(), &mut [0; 15])),
                        std::net::IpAddr::V6(_) => s.collect_str(&ip),
                    };
                }
                if let Some([ip, port]) = terms::tuple_elements::<2>(term) {
                    if let (Some(ip), Ok(port)) = (terms::ip_addr(ip), port.decode::<u16>()) {
                        return s.collect_str(&std::net::SocketAddr::new(ip, port));
                    }
                }
                let items = rustler::types::tuple::get_tuple(term).unwrap_or_default();
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&TermJson(Some(item)))?;
                }
                seq.end()
            }
            _ => s.collect_str(&format_args!("{term:?}")),
        }
    }
}

struct KeyText<'a>(Term<'a>);

impl Serialize for KeyText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match terms::text(self.0) {
            Some(text) => s.serialize_str(&text),
            None => s.collect_str(&format_args!("{:?}", self.0)),
        }
    }
}

/// serde_json output escaped the way mochijson2 escapes: every character
/// from U+007F up as a lowercase `\uXXXX` (surrogate pairs above U+FFFF).
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

    #[test]
    fn plain_payloads_are_copied_as_serde_json_would_write_them() {
        let plain = "sensor reading 42, ok; ".repeat(10);
        for text in [plain.as_str(), "needs \"escaping\" here and there, long enough to take the fast path", "caf\u{e9} and more text to pass sixty-four bytes of length......"] {
            let fast = serde_json::to_string(&Payload::Text(text)).unwrap();
            assert_eq!(fast, serde_json::to_string(text).unwrap());
        }
        assert!(is_plain_ascii(plain.as_bytes()));
        assert!(!is_plain_ascii(b"tab\there"));
        assert!(!is_plain_ascii("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn ipv4_text_matches_display() {
        for octets in [[0, 0, 0, 0], [192, 0, 2, 10], [255, 255, 255, 255], [10, 100, 9, 99]] {
            let expected = std::net::Ipv4Addr::from(octets).to_string();
            assert_eq!(ipv4_text(octets, &mut [0; 15]), expected);
        }
    }

    #[test]
    fn hex_ids() {
        let mut buf = [0u8; 32];
        let n = hex_into(&[0x00, 0xab, 0x10], &mut buf);
        assert_eq!(&buf[..n], b"00ab10");
    }
}
