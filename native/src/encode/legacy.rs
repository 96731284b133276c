//! `format = legacy`: the 2016 emqttd_plugin_kafka_bridge's JSON
//! (mochijson2's field order, names and escaping).

use serde_json::ser::Formatter;

use kafka_bridge_core::event_kind::{EventFields, EventKind};
use kafka_bridge_core::json::object::{Object, Payload};

use crate::event::Event;
use crate::encode::options::EncodeOptions;
use crate::encode::term_entries::TermEntries;
use crate::encode::term_json::{ReasonText, TermJson};

/// The seed plugin's (emqttd_plugin_kafka_bridge, mochijson2) field order and names.
/// `timestamp`: the event's, in ms (`ts` is in seconds).
pub fn write_legacy<F: Formatter + Clone>(
    event: &Event,
    options: &EncodeOptions,
    timestamp: i64,
    mut map: Object<'_, F>,
) -> Result<(), serde_json::Error> {
    let clientid = event.clientid();
    let seconds = timestamp / 1000;
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
            let payload = Payload::of(message.payload, options.payload_encoding);
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
