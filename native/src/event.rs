//! The decoding of the eight hook points' raw arguments (the points
//! themselves are `kafka_bridge_core::event_kind`).
//!
//! Decoding only checks shapes and borrows; the encoder reads the fields it
//! needs straight from the terms.

use std::borrow::Cow;

use rustler::{Binary, Term};

use kafka_bridge_core::event_kind::{EventFields, EventKind};

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

    /// The MQTT 5 User-Property `{Name, Value}` pairs, in order; none when
    /// the headers hold no such list (or a list too long for the work
    /// budget, which then sends the call to a dirty scheduler).
    pub fn user_property_pairs(&self) -> impl Iterator<Item = [Term<'a>; 2]> {
        let list = Some(self.headers())
            .filter(|h| h.is_map())
            .and_then(|h| terms::map_get(h, atoms::properties()))
            .filter(|p| p.is_map())
            .and_then(|p| terms::map_get(p, atoms::user_property()))
            .and_then(terms::list);
        list.into_iter().flatten().filter_map(terms::tuple_elements::<2>)
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
}

impl<'a> EventFields<'a> for Event<'a> {
    fn kind(&self) -> EventKind {
        self.kind
    }

    fn mqtt_topic(&self) -> Option<&'a str> {
        self.message.as_ref().map(|m| m.topic).or(self.sub_topic)
    }

    /// The ClientInfo's clientid, else the publisher.
    fn clientid(&self) -> Option<Cow<'a, str>> {
        if let Some(ci) = self.client_info {
            return field_text(ci, atoms::clientid());
        }
        self.message.as_ref().and_then(|m| terms::text(m.from()))
    }

    fn username(&self) -> Option<Cow<'a, str>> {
        if let Some(ci) = self.client_info {
            return field_text(ci, atoms::username());
        }
        self.message.as_ref().and_then(|m| field_text(m.headers(), atoms::username()))
    }
}

pub fn field_text<'a>(map: Term<'a>, key: rustler::Atom) -> Option<Cow<'a, str>> {
    terms::map_get(map, key).and_then(terms::text)
}
