//! `format = emqx`: EMQX rule-engine field names.



use serde_json::ser::Formatter;

use kafka_bridge_core::event_kind::EventKind;
use kafka_bridge_core::json::hex::hex_into;
use kafka_bridge_core::json::object::{Object, Payload};

use crate::event::{atoms, Event};
use crate::terms;
use crate::encode::fields::field;
use crate::encode::options::EncodeOptions;
use crate::encode::term_entries::TermEntries;
use crate::encode::term_json::{PubProps, ReasonText, TermJson};

/// `timestamp`: the event's (`encode` reads it once for the whole record).
pub fn write_emqx<F: Formatter + Clone>(
    event: &Event,
    options: &EncodeOptions,
    timestamp: i64,
    mut map: Object<'_, F>,
) -> Result<(), serde_json::Error> {
    map.const_entry("event", event.kind.hook_point());
    let client = event.client_info;
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
            let payload = Payload::of(message.payload, options.payload_encoding);
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
