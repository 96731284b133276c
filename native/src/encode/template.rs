//! Renders a compiled record template (`config::record_shape`) for one
//! event: value templates and header values.
//!
//! Each placeholder is written for its place: as text, as a JSON value,
//! or inside a JSON string. A JSON template stays valid JSON whatever a
//! field holds, because every field is written by serde_json (or, for the
//! payload, as a checked JSON text, a JSON string or base64).

use kafka_bridge_core::config::record_shape::{Embedding, Part, RecordTemplate};
use kafka_bridge_core::json::base64_json::base64_into;
use kafka_bridge_core::json::object::Payload;

use crate::encode::placeholder::{payload_as_json, value, Context, FieldValue, PayloadJson};
use crate::encode::term_json::{over_budget, ReasonText, TermJson};
use crate::event::Event;
use crate::terms;
use crate::work_budget;

/// Appends `template` rendered for `event` to `out`.
pub fn render(template: &RecordTemplate, event: &Event, context: &Context, out: &mut Vec<u8>) -> Result<(), String> {
    for part in &template.parts {
        match part {
            Part::Literal(bytes) => out.extend_from_slice(bytes),
            Part::Field(field, embedding) => {
                let field_value = value(event, field, context);
                match embedding {
                    Embedding::Text => write_text(&field_value, context, out),
                    Embedding::JsonValue => write_json(&field_value, context, out),
                    Embedding::JsonString => write_in_string(&field_value, context, out),
                }
                .map_err(|e| format!("${{{}}}: {e}", field.name()))?;
            }
        }
    }
    Ok(())
}

/// Strings as their bytes, numbers as digits, nothing for a missing value;
/// anything else as its JSON text.
fn write_text(field_value: &FieldValue, context: &Context, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match field_value {
        FieldValue::Missing => {}
        FieldValue::Text(bytes) => out.extend_from_slice(bytes),
        FieldValue::Payload(bytes) => out.extend_from_slice(bytes),
        FieldValue::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        FieldValue::Term(term) if term.is_binary() => {
            let bytes = terms::binary(*term).unwrap_or_default();
            if !work_budget::spend(work_budget::text_units(bytes.len())) {
                return Err(over_budget());
            }
            out.extend_from_slice(bytes);
        }
        FieldValue::Term(term) if terms::is_undefined(*term) => {}
        FieldValue::Term(_) | FieldValue::Reason(_) => {
            let mut json = Vec::new();
            write_json(field_value, context, &mut json)?;
            // A JSON string is written as the text it holds.
            match serde_json::from_slice::<String>(&json) {
                Ok(text) => out.extend_from_slice(text.as_bytes()),
                Err(_) => out.extend_from_slice(&json),
            }
        }
    }
    Ok(())
}

fn write_json(field_value: &FieldValue, context: &Context, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match field_value {
        FieldValue::Missing => out.extend_from_slice(b"null"),
        FieldValue::Text(bytes) => serde_json::to_writer(&mut *out, &String::from_utf8_lossy(bytes))?,
        FieldValue::Int(_) | FieldValue::Bool(_) => write_text(field_value, context, out)?,
        FieldValue::Term(term) => serde_json::to_writer(&mut *out, &TermJson(Some(*term)))?,
        FieldValue::Reason(term) => serde_json::to_writer(&mut *out, &ReasonText(Some(*term)))?,
        FieldValue::Payload(bytes) => match payload_as_json(bytes, context.options.payload_encoding).0 {
            PayloadJson::Raw(json) => out.extend_from_slice(json),
            PayloadJson::String(Payload::Plain(text)) => {
                out.push(b'"');
                out.extend_from_slice(text);
                out.push(b'"');
            }
            PayloadJson::String(Payload::Text(text)) => serde_json::to_writer(&mut *out, text)?,
            PayloadJson::String(Payload::Base64(bytes)) => {
                out.push(b'"');
                base64_into(bytes, out);
                out.push(b'"');
            }
        },
    }
    Ok(())
}

/// The text of the value, escaped as the inside of a JSON string.
fn write_in_string(field_value: &FieldValue, context: &Context, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut text = Vec::new();
    write_text(field_value, context, &mut text)?;
    let quoted = serde_json::to_vec(&String::from_utf8_lossy(&text))?;
    out.extend_from_slice(&quoted[1..quoted.len() - 1]);
    Ok(())
}
