//! Encodes a decoded event as the Kafka record's value (and headers).
//!
//! Both formats stream straight into the record's buffer through serde_json's
//! serializer; no intermediate `Value` tree is built on the hot path.

use serde_json::ser::CompactFormatter;

use kafka_bridge_core::config::{Format, PayloadEncoding, UserPropertyHeaders};
use kafka_bridge_core::json::mochi::MochiFormatter;
use kafka_bridge_core::json::object::Object;
use kafka_bridge_core::queue::Headers;

use crate::event::Event;

pub mod emqx;
pub mod fields;
pub mod headers;
pub mod legacy;
pub mod options;
pub mod term_entries;
pub mod term_json;

use emqx::write_emqx;
use headers::{raw_headers, user_properties};
use options::EncodeOptions;
use legacy::write_legacy;

/// Appends the record value for `event` to `out`; returns its headers.
pub fn encode(event: &Event, options: &EncodeOptions, out: &mut Vec<u8>) -> Result<Option<Headers>, String> {
    let mut headers: Option<Headers> = None;
    match (&event.message, options.payload_encoding) {
        (Some(message), PayloadEncoding::Raw) => {
            out.extend_from_slice(message.payload);
            headers = Some(raw_headers(event, message, options.node));
        }
        _ => match options.format {
            Format::Emqx => write_emqx(event, options, Object::new(out, CompactFormatter)).map_err(|e| e.to_string())?,
            Format::Legacy => write_legacy(event, options, Object::new(out, MochiFormatter)).map_err(|e| e.to_string())?,
        },
    }
    if options.user_property_headers != UserPropertyHeaders::None {
        if let Some(message) = &event.message {
            let user_headers = user_properties(message, options.user_property_headers);
            if !user_headers.is_empty() {
                headers.get_or_insert_with(Vec::new).extend(user_headers);
            }
        }
    }
    Ok(headers)
}
