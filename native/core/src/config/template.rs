//! Kafka topic and key specs: a fixed text or a template over
//! `${clientid}`, `${username}` and `${topic}`, parsed and checked once
//! when the config is, and rendered per event on the hot path.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event_kind::EventFields;

const PLACEHOLDERS: [&str; 3] = ["clientid", "username", "topic"];
/// Kafka's limit on topic names.
const MAX_TOPIC_LEN: usize = 249;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    ClientId,
    Username,
    Topic,
}

/// A piece of a template's text: literal text or a `${name}` placeholder.
pub enum Piece<'t> {
    Literal(&'t str),
    Placeholder(&'t str),
}

/// Splits `text` at its `${name}` placeholders (topic and key templates
/// here, record templates in `record_shape`), which each caller checks
/// against its own names.
pub fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            pieces.push(Piece::Literal(&rest[..start]));
        }
        let end = rest[start..].find('}').ok_or_else(|| format!("unclosed placeholder in {text:?}"))? + start;
        pieces.push(Piece::Placeholder(&rest[start + 2..end]));
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    Ok(pieces)
}

/// A string with `${clientid}`, `${username}` and `${topic}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        for piece in pieces(text)? {
            parts.push(match piece {
                Piece::Literal(literal) => Part::Literal(literal.to_string()),
                Piece::Placeholder("clientid") => Part::ClientId,
                Piece::Placeholder("username") => Part::Username,
                Piece::Placeholder("topic") => Part::Topic,
                Piece::Placeholder(other) => {
                    return Err(format!(
                        "unknown placeholder ${{{other}}} in {text:?} (known: {})",
                        PLACEHOLDERS.map(|p| format!("${{{p}}}")).join(", ")
                    ))
                }
            });
        }
        Ok(Template(parts))
    }

    fn is_literal(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Fills the placeholders; missing values render as empty text.
    pub fn render<'e, E: EventFields<'e>>(&self, event: &E) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::ClientId => out.push_str(&event.clientid().unwrap_or_default()),
                Part::Username => out.push_str(&event.username().unwrap_or_default()),
                Part::Topic => out.push_str(event.mqtt_topic().unwrap_or_default()),
            }
        }
        out
    }
}

/// Turns any text into a legal Kafka topic name: `/` becomes `.`, anything
/// outside `[a-zA-Z0-9._-]` becomes `_`, and the name is cut at 249 bytes.
pub fn sanitize_topic(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            '/' => '.',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' => c,
            _ => '_',
        })
        .take(MAX_TOPIC_LEN)
        .collect();
    if out.is_empty() || out == "." || out == ".." {
        out = out.replace('.', "_");
        if out.is_empty() {
            out.push('_');
        }
    }
    out
}

/// The Kafka topic of an event: fixed, or rendered from a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TopicSpec {
    Fixed(Arc<str>),
    Template(Template),
}

impl TopicSpec {
    /// A fixed name must be a legal Kafka topic name as it is; a template's
    /// rendered names are made legal (see `sanitize_topic`).
    pub fn parse(text: &str) -> Result<TopicSpec, String> {
        let template = Template::parse(text)?;
        if !template.is_literal() {
            return Ok(TopicSpec::Template(template));
        }
        if sanitize_topic(text) != text {
            return Err(format!("{text:?} is not a legal Kafka topic name (at most 249 of [a-zA-Z0-9._-])"));
        }
        Ok(TopicSpec::Fixed(text.into()))
    }

    pub fn resolve<'e, E: EventFields<'e>>(&self, event: &E) -> Arc<str> {
        match self {
            TopicSpec::Fixed(name) => name.clone(),
            TopicSpec::Template(template) => sanitize_topic(&template.render(event)).into(),
        }
    }

    pub fn fixed_name(&self) -> Option<&str> {
        match self {
            TopicSpec::Fixed(name) => Some(name),
            TopicSpec::Template(_) => None,
        }
    }
}

/// The Kafka record key of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySpec {
    ClientId,
    Topic,
    None,
    Template(Template),
}

impl KeySpec {
    pub fn parse(text: &str) -> Result<KeySpec, String> {
        Ok(match text {
            "clientid" => KeySpec::ClientId,
            "topic" => KeySpec::Topic,
            "none" => KeySpec::None,
            t if t.contains("${") => KeySpec::Template(Template::parse(t)?),
            other => {
                return Err(format!(
                    "expected clientid, topic, none or a template with ${{...}} placeholders, got {other:?}"
                ))
            }
        })
    }

    pub fn resolve<'e, E: EventFields<'e>>(&self, event: &E) -> Option<Cow<'e, str>> {
        match self {
            KeySpec::ClientId => event.clientid(),
            KeySpec::Topic => event.mqtt_topic().map(Cow::Borrowed),
            KeySpec::None => None,
            KeySpec::Template(template) => Some(Cow::Owned(template.render(event))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_topics() {
        assert_eq!(sanitize_topic("mqtt/a b/ü"), "mqtt.a_b._");
        assert_eq!(sanitize_topic(&"x".repeat(300)).len(), 249);
        assert_eq!(sanitize_topic(""), "_");
        assert_eq!(sanitize_topic(".."), "__");
    }

    #[test]
    fn templates_reject_unknown_placeholders() {
        assert!(Template::parse("t_${clientid}_${topic}").is_ok());
        assert!(Template::parse("t_${client}").unwrap_err().contains("unknown placeholder ${client}"));
        assert!(Template::parse("t_${clientid").is_err());
        assert!(TopicSpec::parse("bad topic").is_err());
        assert!(KeySpec::parse("random").is_err());
    }
}
