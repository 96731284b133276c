//! Reading the fields of hook arguments that both formats write.

use std::time::{SystemTime, UNIX_EPOCH};

use rustler::Term;

use crate::event::Message;
use crate::terms;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn message_timestamp(message: &Message) -> i64 {
    message.timestamp().decode::<i64>().unwrap_or_else(|_| now_ms())
}

/// A field of an optional map (`None`, which is null, when the map or key is absent).
pub fn field(map: Option<Term<'_>>, key: rustler::Atom) -> Option<Term<'_>> {
    map.and_then(|m| terms::map_get(m, key))
}
