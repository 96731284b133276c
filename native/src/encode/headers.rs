//! Kafka record headers: the metadata of `payload_encoding = raw`, and
//! MQTT 5 User-Properties (all of them, or the W3C trace context).

use std::borrow::Cow;

use kafka_bridge_core::config::UserPropertyHeaders;
use kafka_bridge_core::event_kind::EventFields;
use kafka_bridge_core::json::hex::hex_into;
use kafka_bridge_core::queue::Headers;

use crate::event::{Event, Message};
use crate::terms;

/// `timestamp`: the event's (`encode` reads it once for the whole record).
pub fn raw_headers(event: &Event, message: &Message, node: &str, timestamp: i64) -> Headers {
    let mut id = [0u8; 32];
    let id_len = hex_into(message.id, &mut id);
    let header = |name: &'static str, value: Vec<u8>| (Cow::Borrowed(name), value);
    vec![
        header("event", event.kind.hook_point().as_bytes().to_vec()),
        header("clientid", event.clientid().unwrap_or_default().as_bytes().to_vec()),
        header("topic", message.topic.as_bytes().to_vec()),
        header("qos", message.qos().decode::<i64>().unwrap_or(0).to_string().into_bytes()),
        header("id", id[..id_len].to_vec()),
        header("timestamp", timestamp.to_string().into_bytes()),
        header("node", node.as_bytes().to_vec()),
    ]
}

/// The W3C trace context's names (lowercase, as OpenTelemetry's Kafka
/// instrumentation looks them up; matched in any case).
const TRACE_CONTEXT: [&str; 2] = ["traceparent", "tracestate"];

/// MQTT 5 User-Properties, as Kafka headers (names may repeat, as in MQTT):
/// every pair, or only the trace context's, under its lowercase names.
pub fn user_properties(message: &Message, which: UserPropertyHeaders) -> Headers {
    let mut out = Vec::new();
    for [k, v] in message.user_property_pairs() {
        let (Some(k), Some(v)) = (terms::binary(k), terms::binary(v)) else { continue };
        let name = match which {
            UserPropertyHeaders::All => Cow::Owned(String::from_utf8_lossy(k).into_owned()),
            _ => match TRACE_CONTEXT.iter().find(|name| name.as_bytes().eq_ignore_ascii_case(k)) {
                Some(name) => Cow::Borrowed(*name),
                None => continue,
            },
        };
        out.push((name, v.to_vec()));
    }
    out
}
