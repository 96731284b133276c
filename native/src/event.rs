//! The eight EMQX hook points and the decoding of their raw arguments.
//!
//! Decoding only checks shapes and borrows; the encoder reads the fields it
//! needs straight from the terms.

use rustler::{Binary, Term};

use crate::terms::{self, tuple, Elements};

/// Field names of the maps EMQX passes (ConnInfo, ClientInfo, message headers).
pub mod atoms {
    rustler::atoms! {
        clientid, username, peerhost, sockport, is_bridge, proto_name, proto_ver,
        keepalive, clean_start, expiry_interval, connected_at, disconnected_at,
        qos, retain, properties,
        user_property = "User-Property",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ClientConnected,
    ClientDisconnected,
    SessionSubscribed,
    SessionUnsubscribed,
    MessagePublish,
    MessageDelivered,
    MessageAcked,
    MessageDropped,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::ClientConnected,
        EventKind::ClientDisconnected,
        EventKind::SessionSubscribed,
        EventKind::SessionUnsubscribed,
        EventKind::MessagePublish,
        EventKind::MessageDelivered,
        EventKind::MessageAcked,
        EventKind::MessageDropped,
    ];

    /// The hook point, which is also the `event` field of the JSON.
    pub fn hook_point(self) -> &'static str {
        match self {
            EventKind::ClientConnected => "client.connected",
            EventKind::ClientDisconnected => "client.disconnected",
            EventKind::SessionSubscribed => "session.subscribed",
            EventKind::SessionUnsubscribed => "session.unsubscribed",
            EventKind::MessagePublish => "message.publish",
            EventKind::MessageDelivered => "message.delivered",
            EventKind::MessageAcked => "message.acked",
            EventKind::MessageDropped => "message.dropped",
        }
    }

    /// The key under `events` in the config.
    pub fn config_name(self) -> &'static str {
        match self {
            EventKind::ClientConnected => "client_connected",
            EventKind::ClientDisconnected => "client_disconnected",
            EventKind::SessionSubscribed => "session_subscribed",
            EventKind::SessionUnsubscribed => "session_unsubscribed",
            EventKind::MessagePublish => "message_publish",
            EventKind::MessageDelivered => "message_delivered",
            EventKind::MessageAcked => "message_acked",
            EventKind::MessageDropped => "message_dropped",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn has_message(self) -> bool {
        matches!(
            self,
            EventKind::MessagePublish | EventKind::MessageDelivered | EventKind::MessageAcked | EventKind::MessageDropped
        )
    }
}

/// The `#message{}` record, decoded by position. The text and binary
/// fields are checked and borrowed here; the others are read from the
/// tuple when the encoder wants them. (Keeping the struct small keeps the
/// event cheap to move: holding every field as a `Term` made it a 168-byte
/// copy, three times per hook call.)
pub struct Message<'a> {
    /// The record's ten elements, on the calling process's heap.
    elements: Elements<'a, 10>,
    pub id: &'a [u8],
    pub topic: &'a str,
    pub payload: &'a [u8],
}

rustler::atoms! {
    message,
}

/// Why a hook's arguments were not decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not the shape EMQX passes; the text says what is wrong.
    Invalid(&'static str),
    /// The payload is over the inline limit, or an iolist to flatten:
    /// decode again on a dirty scheduler.
    NeedsDirty,
}

impl From<&'static str> for DecodeError {
    fn from(reason: &'static str) -> Self {
        DecodeError::Invalid(reason)
    }
}

impl<'a> Message<'a> {
    /// `inline_limit`: the largest payload to take on this scheduler (`None`
    /// on a dirty one, which takes any size and flattens iolists).
    #[inline]
    pub fn decode(term: Term<'a>, inline_limit: Option<usize>) -> Result<Message<'a>, DecodeError> {
        let elements = tuple::<10>(term).ok_or("not a #message{} record (a 10-tuple)")?;
        if message() != elements.get(0) {
            return Err("not a #message{} record (tag)".into());
        }
        let topic = terms::binary(elements.get(6)).ok_or("message topic is not a binary")?;
        let topic = std::str::from_utf8(topic).map_err(|_| "message topic is not UTF-8")?;
        let payload = elements.get(7);
        let payload = match (Binary::from_term(payload), inline_limit) {
            (Ok(binary), Some(limit)) if binary.len() > limit => return Err(DecodeError::NeedsDirty),
            (Ok(binary), _) => binary,
            (Err(_), Some(_)) => return Err(DecodeError::NeedsDirty),
            (Err(_), None) => Binary::from_iolist(payload).map_err(|_| "message payload is not iodata")?,
        };
        Ok(Message { elements, id: terms::binary(elements.get(1)).unwrap_or_default(), topic, payload: payload.as_slice() })
    }

    pub fn qos(&self) -> Term<'a> {
        self.elements.get(2)
    }

    /// The publisher: a clientid binary, or an atom for system messages.
    pub fn from(&self) -> Term<'a> {
        self.elements.get(3)
    }

    pub fn flags(&self) -> Term<'a> {
        self.elements.get(4)
    }

    pub fn headers(&self) -> Term<'a> {
        self.elements.get(5)
    }

    pub fn timestamp(&self) -> Term<'a> {
        self.elements.get(8)
    }
}

/// One hook invocation's arguments, checked for shape.
pub struct Event<'a> {
    pub kind: EventKind,
    /// ClientInfo of the client the event is about (receiver for delivered/acked).
    pub client_info: Option<Term<'a>>,
    pub conn_info: Option<Term<'a>>,
    pub message: Option<Message<'a>>,
    /// The subscription's topic filter for session events.
    pub sub_topic: Option<&'a str>,
    pub sub_opts: Option<Term<'a>>,
    pub reason: Option<Term<'a>>,
}

impl<'a> Event<'a> {
    /// Decodes the hook's own arguments (ExtraArgs already removed);
    /// `inline_limit` as for `Message::decode`.
    #[inline]
    pub fn decode(kind: EventKind, args: &[Term<'a>], inline_limit: Option<usize>) -> Result<Event<'a>, DecodeError> {
        let mut event =
            Event { kind, client_info: None, conn_info: None, message: None, sub_topic: None, sub_opts: None, reason: None };
        let map = |t: Term<'a>, what| if t.is_map() { Ok(t) } else { Err(what) };
        match (kind, args) {
            (EventKind::ClientConnected, [ci, conn, ..]) => {
                event.client_info = Some(map(*ci, "ClientInfo is not a map")?);
                event.conn_info = Some(map(*conn, "ConnInfo is not a map")?);
            }
            (EventKind::ClientDisconnected, [ci, reason, conn]) => {
                event.client_info = Some(map(*ci, "ClientInfo is not a map")?);
                event.reason = Some(*reason);
                event.conn_info = Some(map(*conn, "ConnInfo is not a map")?);
            }
            (EventKind::SessionSubscribed | EventKind::SessionUnsubscribed, [ci, topic, opts]) => {
                event.client_info = Some(map(*ci, "ClientInfo is not a map")?);
                let topic = terms::binary(*topic).ok_or("subscription topic is not a binary")?;
                event.sub_topic = Some(std::str::from_utf8(topic).map_err(|_| "subscription topic is not UTF-8")?);
                event.sub_opts = Some(*opts);
            }
            (EventKind::MessagePublish, [msg, ..]) => event.message = Some(Message::decode(*msg, inline_limit)?),
            (EventKind::MessageDelivered | EventKind::MessageAcked, [ci, msg, ..]) => {
                event.client_info = Some(map(*ci, "ClientInfo is not a map")?);
                event.message = Some(Message::decode(*msg, inline_limit)?);
            }
            (EventKind::MessageDropped, [msg, _info, reason]) => {
                event.message = Some(Message::decode(*msg, inline_limit)?);
                event.reason = Some(*reason);
            }
            _ => return Err("wrong number of hook arguments".into()),
        }
        Ok(event)
    }

    /// The MQTT topic used for filters and routes: the message's topic, or
    /// the subscription's filter for session events.
    pub fn mqtt_topic(&self) -> Option<&'a str> {
        self.message.as_ref().map(|m| m.topic).or(self.sub_topic)
    }

    /// The client the event is about: the ClientInfo's clientid, else the
    /// publisher.
    pub fn clientid(&self) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(ci) = self.client_info {
            return field_text(ci, atoms::clientid());
        }
        self.message.as_ref().and_then(|m| terms::text(m.from()))
    }

    pub fn username(&self) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(ci) = self.client_info {
            return field_text(ci, atoms::username());
        }
        self.message.as_ref().and_then(|m| field_text(m.headers(), atoms::username()))
    }
}

pub fn field_text<'a>(map: Term<'a>, key: rustler::Atom) -> Option<std::borrow::Cow<'a, str>> {
    terms::map_get(map, key).and_then(terms::text)
}

/// `EventKind` is the list of events; the Erlang callbacks, the NIF's hook
/// atoms and README's event table must name exactly the same ones. (The
/// config files and the form are checked in `config::shipped_files` and
/// test/config_schema_test.py.)
#[cfg(test)]
mod every_place_names_the_same_events {
    use super::EventKind;
    use std::collections::BTreeSet;

    fn hook_points() -> BTreeSet<String> {
        EventKind::ALL.iter().map(|k| k.hook_point().to_string()).collect()
    }

    /// The texts between `open` and the next `close` on each line of `text`
    /// that starts with `prefix`.
    fn quoted(text: &str, prefix: &str, open: &str, close: char) -> BTreeSet<String> {
        text.lines()
            .filter_map(|line| line.trim_start().strip_prefix(prefix))
            .filter_map(|rest| rest.split_once(open).and_then(|(_, r)| r.split(close).next()).map(String::from))
            .collect()
    }

    #[test]
    fn erlang_callbacks() {
        let erl = std::fs::read_to_string("../erl_src/emqx_plugin_kafka_bridge.erl").unwrap();
        assert_eq!(quoted(&erl, "callback(", "'", '\''), hook_points());
    }

    #[test]
    fn nif_hook_atoms() {
        let lib = std::fs::read_to_string("src/lib.rs").unwrap();
        let atoms: BTreeSet<String> =
            lib.lines().filter(|l| l.contains(" = \"") && l.trim_end().ends_with("\",")).filter_map(|l| l.split('"').nth(1)).map(String::from).collect();
        assert_eq!(atoms, hook_points());
    }

    #[test]
    fn readme_event_table() {
        let readme = std::fs::read_to_string("../README.md").unwrap();
        let rows: BTreeSet<(String, String)> = readme
            .lines()
            .filter(|l| l.starts_with("| `") && l.matches('`').count() >= 4)
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let hook = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
                hook.contains('.').then(|| (cells[1].trim_matches('`').to_string(), hook.to_string()))
            })
            .filter(|(_, hook)| ["client.", "session.", "message."].iter().any(|p| hook.starts_with(p)))
            .collect();
        let expected: BTreeSet<(String, String)> =
            EventKind::ALL.iter().map(|k| (k.config_name().to_string(), k.hook_point().to_string())).collect();
        assert_eq!(rows, expected);
    }
}
