//! The value of one placeholder for an event, read from the hook's terms
//! where the event JSON (`format = emqx`, `encode/emqx.rs`) reads that
//! field, so `${clientid}` is what the JSON's `clientid` holds.

use std::borrow::Cow;

use rustler::Term;

use kafka_bridge_core::config::record_shape::Field;
use kafka_bridge_core::config::PayloadEncoding;
use kafka_bridge_core::json::hex::hex_into;
use kafka_bridge_core::json::object::Payload;

use crate::encode::fields::field;
use crate::encode::options::EncodeOptions;
use crate::event::{atoms, Event, Message};
use crate::terms;

pub enum FieldValue<'a> {
    /// The event has no such field, or it is `undefined`: JSON `null`.
    Missing,
    /// Any term, written as `TermJson` writes it (binaries are text).
    Term(Term<'a>),
    Text(Cow<'a, [u8]>),
    Int(i64),
    Bool(bool),
    /// A disconnect or drop reason (`ReasonText`).
    Reason(Term<'a>),
    Payload(&'a [u8]),
}

/// What one event's placeholders read besides its terms.
pub struct Context<'o> {
    pub options: &'o EncodeOptions<'o>,
    /// The event's `timestamp`, read once per event.
    pub timestamp: i64,
}

pub fn value<'a>(event: &Event<'a>, name: &Field, context: &Context) -> FieldValue<'a> {
    let client = event.client_info;
    let conn = event.conn_info;
    let message = event.message.as_ref();
    let headers = message.map(Message::headers).filter(|h| h.is_map());
    let term = |t: Option<Term<'a>>| t.map_or(FieldValue::Missing, FieldValue::Term);
    // delivered and acked carry the receiver's ClientInfo; publish and
    // dropped only the message, whose sender is the client.
    let receiver = client.is_some() && message.is_some();
    match name {
        Field::Event => FieldValue::Text(Cow::Borrowed(event.kind.hook_point().as_bytes())),
        Field::Id => match message {
            Some(message) => {
                let mut id = [0u8; 32];
                let len = hex_into(message.id, &mut id);
                FieldValue::Text(Cow::Owned(id[..len].to_vec()))
            }
            None => FieldValue::Missing,
        },
        Field::ClientId => match (client, message) {
            (Some(client), _) => term(field(Some(client), atoms::clientid())),
            (None, Some(message)) => FieldValue::Term(message.from()),
            (None, None) => FieldValue::Missing,
        },
        Field::Username => match client {
            Some(client) => term(field(Some(client), atoms::username())),
            None => term(field(headers, atoms::username())),
        },
        Field::FromClientId if receiver => term(message.map(Message::from)),
        Field::FromUsername if receiver => term(field(headers, atoms::username())),
        Field::FromClientId | Field::FromUsername => FieldValue::Missing,
        Field::Topic => match (message, event.sub_topic) {
            (Some(message), _) => FieldValue::Text(Cow::Borrowed(message.topic.as_bytes())),
            (None, Some(topic)) => FieldValue::Text(Cow::Borrowed(topic.as_bytes())),
            (None, None) => FieldValue::Missing,
        },
        Field::Qos => match message {
            Some(message) => FieldValue::Term(message.qos()),
            None => term(field(event.sub_opts.filter(|o| o.is_map()), atoms::qos())),
        },
        Field::Retain => match message {
            Some(message) => {
                FieldValue::Bool(terms::map_get(message.flags(), atoms::retain()).and_then(terms::as_bool).unwrap_or(false))
            }
            None => FieldValue::Missing,
        },
        Field::Payload => message.map_or(FieldValue::Missing, |m| FieldValue::Payload(m.payload)),
        Field::PayloadEncoding => match message {
            Some(message) => FieldValue::Text(Cow::Borrowed(payload_as_json(message.payload, context.options.payload_encoding).1.as_bytes())),
            None => FieldValue::Missing,
        },
        Field::Peerhost => match message {
            Some(_) => term(field(headers, atoms::peerhost())),
            None => term(field(client, atoms::peerhost())),
        },
        Field::UserProperty(wanted) => message
            .and_then(|m| m.user_property_pairs().find(|[k, _]| terms::binary(*k) == Some(wanted.as_bytes())))
            .map_or(FieldValue::Missing, |[_, v]| FieldValue::Term(v)),
        Field::PublishReceivedAt if message.is_some() => FieldValue::Int(context.timestamp),
        Field::PublishReceivedAt => FieldValue::Missing,
        Field::Timestamp => FieldValue::Int(context.timestamp),
        Field::Node => FieldValue::Text(Cow::Owned(context.options.node.as_bytes().to_vec())),
        Field::Reason => event.reason.map_or(FieldValue::Missing, FieldValue::Reason),
        Field::Sockport => term(field(client, atoms::sockport())),
        Field::IsBridge => term(field(client, atoms::is_bridge())),
        Field::ProtoName => term(field(conn, atoms::proto_name())),
        Field::ProtoVer => term(field(conn, atoms::proto_ver())),
        Field::Keepalive => term(field(conn, atoms::keepalive())),
        Field::CleanStart => term(field(conn, atoms::clean_start())),
        Field::ConnectedAt => term(field(conn, atoms::connected_at())),
        // ConnInfo holds milliseconds; the rule engine reports seconds.
        Field::ExpiryInterval => match field(conn, atoms::expiry_interval()) {
            Some(ms) => ms.decode::<i64>().map_or(FieldValue::Term(ms), |ms| FieldValue::Int(ms / 1000)),
            None => FieldValue::Missing,
        },
        Field::DisconnectedAt => match field(conn, atoms::disconnected_at()).filter(|t| t.is_integer()) {
            Some(at) => FieldValue::Term(at),
            None => FieldValue::Int(context.timestamp),
        },
    }
}

/// How `${payload}` is written as a JSON value, and the name
/// `${payload_encoding}` gives that: as the event JSON writes it
/// (`utf8` text or `base64`), except that with `payload_encoding = raw` a
/// payload that is itself a JSON text is embedded as it is (`json`).
pub fn payload_as_json(payload: &[u8], encoding: PayloadEncoding) -> (PayloadJson<'_>, &'static str) {
    if encoding == PayloadEncoding::Raw {
        if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() {
            return (PayloadJson::Raw(payload), "json");
        }
        let payload = Payload::of(payload, PayloadEncoding::Auto);
        let name = payload.encoding_name();
        return (PayloadJson::String(payload), name);
    }
    let payload = Payload::of(payload, encoding);
    let name = payload.encoding_name();
    (PayloadJson::String(payload), name)
}

pub enum PayloadJson<'a> {
    /// A JSON text already.
    Raw(&'a [u8]),
    /// Written as a JSON string (text or base64).
    String(Payload<'a>),
}
