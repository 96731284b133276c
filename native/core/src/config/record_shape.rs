//! How an event or a route shapes its Kafka record beyond topic and key:
//! the value (`event`, `payload` or a template), extra headers (name and
//! value templates) and the record's timestamp (`publish` or `now`).
//!
//! Templates are compiled here once, when the config is parsed, into
//! parts; the NIF renders them per event (`encode/template.rs`) without
//! parsing anything. The placeholders are the event JSON's field names, as
//! EMQX's rule engine names them.

use crate::config::template::{pieces, Piece};
use crate::event_kind::EventKind;

/// The record's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSpec {
    /// The event JSON in the configured `format` (`${.}` in EMQX's sink).
    Event,
    /// The MQTT payload's bytes, as they are.
    Payload,
    Template(RecordTemplate),
}

/// The record's Kafka timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampSpec {
    /// When EMQX received the message (the event's `timestamp`), so a
    /// record spooled through an outage keeps the time it happened.
    Publish,
    /// When librdkafka takes the record.
    Now,
}

impl TimestampSpec {
    pub const CHOICES: &'static [(&'static str, TimestampSpec)] =
        &[("publish", TimestampSpec::Publish), ("now", TimestampSpec::Now)];
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderSpec {
    pub name: String,
    pub value: RecordTemplate,
}

/// What an event's records carry besides topic and key.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordShape {
    pub value: ValueSpec,
    pub headers: Vec<HeaderSpec>,
    pub timestamp: TimestampSpec,
}

impl Default for RecordShape {
    fn default() -> Self {
        RecordShape { value: ValueSpec::Event, headers: Vec::new(), timestamp: TimestampSpec::Publish }
    }
}

/// A field of the event a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Event,
    Id,
    ClientId,
    Username,
    FromClientId,
    FromUsername,
    Topic,
    Qos,
    Retain,
    Payload,
    /// How `${payload}` is written as a JSON value: `utf8`, `base64` or `json`.
    PayloadEncoding,
    Peerhost,
    /// `${pub_props.'User-Property'.NAME}`: the first pair named NAME.
    UserProperty(String),
    PublishReceivedAt,
    Timestamp,
    Node,
    Reason,
    Sockport,
    ProtoName,
    ProtoVer,
    Keepalive,
    CleanStart,
    ExpiryInterval,
    ConnectedAt,
    IsBridge,
    DisconnectedAt,
}

const USER_PROPERTY_PREFIX: &str = "pub_props.'User-Property'.";

impl Field {
    /// Every name with the events that have it (`None`: every event).
    const NAMES: &'static [(&'static str, Field, Option<&'static [EventKind]>)] = {
        use EventKind::*;
        const MESSAGES: &[EventKind] = &EventKind::MESSAGES;
        const CONNECTED: &[EventKind] = &[ClientConnected];
        &[
            ("event", Field::Event, None),
            ("clientid", Field::ClientId, None),
            ("username", Field::Username, None),
            ("peerhost", Field::Peerhost, None),
            ("timestamp", Field::Timestamp, None),
            ("node", Field::Node, None),
            ("id", Field::Id, Some(MESSAGES)),
            ("from_clientid", Field::FromClientId, Some(&[MessageDelivered, MessageAcked])),
            ("from_username", Field::FromUsername, Some(&[MessageDelivered, MessageAcked])),
            (
                "topic",
                Field::Topic,
                Some(&[MessagePublish, MessageDelivered, MessageAcked, MessageDropped, SessionSubscribed, SessionUnsubscribed]),
            ),
            (
                "qos",
                Field::Qos,
                Some(&[MessagePublish, MessageDelivered, MessageAcked, MessageDropped, SessionSubscribed, SessionUnsubscribed]),
            ),
            ("retain", Field::Retain, Some(MESSAGES)),
            ("payload", Field::Payload, Some(MESSAGES)),
            ("payload_encoding", Field::PayloadEncoding, Some(MESSAGES)),
            ("publish_received_at", Field::PublishReceivedAt, Some(MESSAGES)),
            ("reason", Field::Reason, Some(&[ClientDisconnected, MessageDropped])),
            ("sockport", Field::Sockport, Some(CONNECTED)),
            ("proto_name", Field::ProtoName, Some(CONNECTED)),
            ("proto_ver", Field::ProtoVer, Some(CONNECTED)),
            ("keepalive", Field::Keepalive, Some(CONNECTED)),
            ("clean_start", Field::CleanStart, Some(CONNECTED)),
            ("expiry_interval", Field::ExpiryInterval, Some(CONNECTED)),
            ("connected_at", Field::ConnectedAt, Some(CONNECTED)),
            ("is_bridge", Field::IsBridge, Some(CONNECTED)),
            ("disconnected_at", Field::DisconnectedAt, Some(&[ClientDisconnected])),
        ]
    };

    /// The placeholder's name, for errors.
    pub fn name(&self) -> String {
        match self {
            Field::UserProperty(property) => format!("{USER_PROPERTY_PREFIX}{property}"),
            field => Self::NAMES.iter().find(|(_, f, _)| f == field).map_or("?", |(n, _, _)| n).to_string(),
        }
    }

    /// The field a placeholder names, if any of `kinds` has it.
    fn parse(name: &str, kinds: &[EventKind]) -> Result<Field, String> {
        if let Some(property) = name.strip_prefix(USER_PROPERTY_PREFIX) {
            if property.is_empty() {
                return Err(format!("${{{name}}} names no User-Property"));
            }
            if !kinds.iter().any(|k| k.has_message()) {
                return Err(format!("${{{name}}}: only message events have publish properties"));
            }
            return Ok(Field::UserProperty(property.to_string()));
        }
        let known = || {
            let mut names: Vec<String> = Self::NAMES
                .iter()
                .filter(|(_, _, only)| only.is_none_or(|only| kinds.iter().any(|k| only.contains(k))))
                .map(|(n, _, _)| format!("${{{n}}}"))
                .collect();
            if kinds.iter().any(|k| k.has_message()) {
                names.push(format!("${{{USER_PROPERTY_PREFIX}NAME}}"));
            }
            names.join(", ")
        };
        match Self::NAMES.iter().find(|(n, _, _)| *n == name) {
            Some((_, field, only)) if only.is_none_or(|only| kinds.iter().any(|k| only.contains(k))) => Ok(field.clone()),
            Some(_) => Err(format!("${{{name}}} is not a field of this event (its fields: {})", known())),
            None => Err(format!("unknown placeholder ${{{name}}} (known: {})", known())),
        }
    }
}

/// Where a placeholder's value goes, which says how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// Plain text: strings as their bytes, numbers as digits, the payload
    /// as its bytes, a missing value as nothing.
    Text,
    /// Where a JSON value goes in a JSON template: strings quoted and
    /// escaped, numbers and booleans bare, a missing value `null`.
    JsonValue,
    /// Inside a JSON string of a JSON template: escaped, without quotes.
    JsonString,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Literal(Box<[u8]>),
    Field(Field, Embedding),
}

/// A compiled template: literals and fields, each field with its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordTemplate {
    pub parts: Vec<Part>,
}

impl RecordTemplate {
    /// A text template (header values, and values that are not JSON):
    /// every field is written as text.
    pub fn text(template: &str, kinds: &[EventKind]) -> Result<RecordTemplate, String> {
        compile(template, kinds, false)
    }

    /// A value template: JSON when it starts with `{` or `[`, then it must
    /// be valid JSON with its placeholders filled, whatever they hold.
    pub fn value(template: &str, kinds: &[EventKind]) -> Result<RecordTemplate, String> {
        let json = template.trim_start().starts_with(['{', '[']);
        let compiled = compile(template, kinds, json)?;
        if json {
            compiled.check_json()?;
        }
        Ok(compiled)
    }

    /// Every field is written as valid JSON at its place, so one fill that
    /// parses shows that every fill does.
    fn check_json(&self) -> Result<(), String> {
        let mut sample = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => sample.extend_from_slice(bytes),
                Part::Field(_, Embedding::JsonString) => sample.push(b'x'),
                Part::Field(..) => sample.extend_from_slice(b"null"),
            }
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&sample)
            .map(|_| ())
            .map_err(|e| format!("a template starting with {{ or [ must be JSON, with each placeholder where a value or text goes: {e}"))
    }
}

fn compile(template: &str, kinds: &[EventKind], json: bool) -> Result<RecordTemplate, String> {
    let mut parts = Vec::new();
    // Where the JSON text before each placeholder leaves off: inside a
    // string or not (and just after a backslash in one).
    let (mut in_string, mut escaped) = (false, false);
    for piece in pieces(template)? {
        match piece {
            Piece::Literal(literal) => {
                if json {
                    for byte in literal.bytes() {
                        match (byte, escaped) {
                            (_, true) => escaped = false,
                            (b'\\', false) if in_string => escaped = true,
                            (b'"', false) => in_string = !in_string,
                            _ => {}
                        }
                    }
                }
                parts.push(Part::Literal(literal.as_bytes().into()));
            }
            Piece::Placeholder(name) => {
                let field = Field::parse(name, kinds)?;
                let embedding = match (json, in_string) {
                    (false, _) => Embedding::Text,
                    (true, false) => Embedding::JsonValue,
                    (true, true) if field == Field::Payload => {
                        return Err("put ${payload} where a JSON value goes, not inside quotes: it may not be text".into())
                    }
                    (true, true) => Embedding::JsonString,
                };
                parts.push(Part::Field(field, embedding));
            }
        }
    }
    Ok(RecordTemplate { parts })
}

impl ValueSpec {
    pub fn parse(text: &str, kinds: &[EventKind]) -> Result<ValueSpec, String> {
        match text {
            "event" | "${.}" => Ok(ValueSpec::Event),
            "payload" if kinds.iter().all(|k| k.has_message()) => Ok(ValueSpec::Payload),
            "payload" => Err("payload: this event has no payload (expected event or a template)".into()),
            t if t.contains("${") => Ok(ValueSpec::Template(RecordTemplate::value(t, kinds)?)),
            other => Err(format!("expected event, payload or a template with ${{...}} placeholders, got {other:?}")),
        }
    }
}

/// A Kafka header name: text that is not empty.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a header needs a name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;

    const MESSAGES: &[EventKind] = &EventKind::MESSAGES;

    #[test]
    fn value_modes() {
        assert_eq!(ValueSpec::parse("event", MESSAGES), Ok(ValueSpec::Event));
        assert_eq!(ValueSpec::parse("${.}", MESSAGES), Ok(ValueSpec::Event));
        assert_eq!(ValueSpec::parse("payload", MESSAGES), Ok(ValueSpec::Payload));
        assert!(ValueSpec::parse("payload", &[ClientConnected]).unwrap_err().contains("no payload"));
        assert!(ValueSpec::parse("body", MESSAGES).is_err());
    }

    #[test]
    fn json_templates_know_where_each_placeholder_goes() {
        let ValueSpec::Template(t) = ValueSpec::parse(r#"{"c":"dev-${clientid}","p":${payload},"q":${qos}}"#, MESSAGES).unwrap() else {
            panic!()
        };
        let fields: Vec<(Field, Embedding)> = t
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(f, e) => Some((f.clone(), *e)),
                Part::Literal(_) => None,
            })
            .collect();
        assert_eq!(
            fields,
            [(Field::ClientId, Embedding::JsonString), (Field::Payload, Embedding::JsonValue), (Field::Qos, Embedding::JsonValue)]
        );
    }

    #[test]
    fn json_templates_are_checked() {
        assert!(RecordTemplate::value(r#"{"p":${payload}"#, MESSAGES).unwrap_err().contains("must be JSON"));
        assert!(RecordTemplate::value(r#"{"p":"${payload}"}"#, MESSAGES).unwrap_err().contains("inside quotes"));
        // A quote escaped inside a string does not end it.
        assert!(RecordTemplate::value(r#"{"a\"${clientid}":1}"#, MESSAGES).is_ok());
        // Text templates are not JSON, whatever they hold.
        assert!(RecordTemplate::value("id=${clientid} {", MESSAGES).is_ok());
    }

    #[test]
    fn placeholders_are_checked_per_event() {
        assert!(RecordTemplate::text("${payload}", &[ClientConnected]).unwrap_err().contains("not a field of this event"));
        assert!(RecordTemplate::text("${sockport}", &[ClientConnected]).is_ok());
        assert!(RecordTemplate::text("${nope}", MESSAGES).unwrap_err().contains("unknown placeholder ${nope}"));
        assert_eq!(
            RecordTemplate::text("${pub_props.'User-Property'.traceparent}", MESSAGES).unwrap().parts,
            [Part::Field(Field::UserProperty("traceparent".into()), Embedding::Text)]
        );
        assert!(RecordTemplate::text("${pub_props.'User-Property'.x}", &[SessionSubscribed]).is_err());
        assert!(RecordTemplate::text("${clientid", MESSAGES).is_err());
        assert_eq!(Field::parse("from_username", MESSAGES).unwrap().name(), "from_username");
        assert_eq!(Field::UserProperty("tp".into()).name(), "pub_props.'User-Property'.tp");
    }
}
