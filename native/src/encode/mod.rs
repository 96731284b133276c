//! Encodes a decoded event as the Kafka record's value (and headers).
//!
//! Both formats stream straight into the record's buffer through serde_json's
//! serializer; no intermediate `Value` tree is built on the hot path.

use serde_json::ser::CompactFormatter;

use kafka_bridge_core::config::record_shape::{HeaderSpec, TimestampSpec, ValueSpec};
use kafka_bridge_core::config::{Format, PayloadEncoding, UserPropertyHeaders};
use kafka_bridge_core::json::mochi::MochiFormatter;
use kafka_bridge_core::json::object::Object;
use kafka_bridge_core::queue::Headers;
use kafka_bridge_core::routing::Target;

use crate::event::Event;

pub mod emqx;
pub mod fields;
pub mod headers;
pub mod legacy;
pub mod options;
pub mod placeholder;
pub mod template;
pub mod term_entries;
pub mod term_json;

use emqx::write_emqx;
use fields::{message_timestamp, now_ms};
use headers::{raw_headers, user_properties};
use options::EncodeOptions;
use legacy::write_legacy;
use placeholder::Context;
use template::render;

/// What goes beside the value into a Kafka record.
pub struct Encoded {
    pub headers: Option<Headers>,
    /// The record's Kafka timestamp; `None`: when librdkafka takes it.
    pub timestamp_ms: Option<i64>,
}

/// Appends the record value for `event` to `out`, shaped as `target` says.
pub fn encode(event: &Event, options: &EncodeOptions, target: &Target, out: &mut Vec<u8>) -> Result<Encoded, String> {
    let mut headers: Option<Headers> = None;
    // Read once, so the JSON, the templates and the Kafka timestamp agree.
    let timestamp = match &event.message {
        Some(message) => message_timestamp(message),
        None => now_ms(),
    };
    let context = Context { options, timestamp };
    match (target.value, &event.message, options.payload_encoding) {
        (ValueSpec::Event, Some(message), PayloadEncoding::Raw) => {
            out.extend_from_slice(message.payload);
            headers = Some(raw_headers(event, message, options.node, timestamp));
        }
        (ValueSpec::Event, ..) => match options.format {
            Format::Emqx => {
                write_emqx(event, options, timestamp, Object::new(out, CompactFormatter)).map_err(|e| e.to_string())?
            }
            Format::Legacy => {
                write_legacy(event, options, timestamp, Object::new(out, MochiFormatter)).map_err(|e| e.to_string())?
            }
        },
        (ValueSpec::Payload, Some(message), _) => out.extend_from_slice(message.payload),
        // Refused when the config is parsed: only message events have a payload.
        (ValueSpec::Payload, None, _) => {}
        (ValueSpec::Template(template), ..) => render(template, event, &context, out)?,
    }
    if !target.headers.is_empty() {
        headers.get_or_insert_with(Vec::new).extend(template_headers(target.headers, event, &context)?);
    }
    if options.user_property_headers != UserPropertyHeaders::None {
        if let Some(message) = &event.message {
            let user_headers = user_properties(message, options.user_property_headers);
            if !user_headers.is_empty() {
                headers.get_or_insert_with(Vec::new).extend(user_headers);
            }
        }
    }
    let timestamp_ms = (target.timestamp == TimestampSpec::Publish).then_some(timestamp);
    Ok(Encoded { headers, timestamp_ms })
}

fn template_headers(specs: &[HeaderSpec], event: &Event, context: &Context) -> Result<Headers, String> {
    let mut headers = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut value = Vec::new();
        render(&spec.value, event, context, &mut value).map_err(|e| format!("header {:?}: {e}", spec.name))?;
        headers.push((spec.name.clone().into(), value));
    }
    Ok(headers)
}
