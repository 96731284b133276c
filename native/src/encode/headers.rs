//! Kafka record headers: the metadata of `payload_encoding = raw`, and
//! MQTT 5 User-Properties.



use std::borrow::Cow;

use crate::event::{atoms, Event, Message};
use crate::terms;
use crate::encode::fields::message_timestamp;

/// Kafka headers of one record.
pub type Headers = Vec<(Cow<'static, str>, Vec<u8>)>;

pub fn raw_headers(event: &Event, message: &Message, node: &str) -> Headers {
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
pub fn user_properties(message: &Message) -> Headers {
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
pub fn hex_into(bytes: &[u8], out: &mut [u8; 32]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(16);
    for (i, b) in bytes[..n].iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    2 * n
}
