//! Which events are bridged, to which Kafka topic, under which key.
//!
//! A `Routing` is compiled once per configuration and swapped atomically on
//! reload, so the hot path never parses anything.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::{Config, Format, PayloadEncoding};
use crate::event::{Event, EventKind};
use crate::topic_filter::FilterTrie;

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

/// A string with `${clientid}`, `${username}` and `${topic}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let end = rest[start..].find('}').ok_or_else(|| format!("unclosed placeholder in {text:?}"))? + start;
            let name = &rest[start + 2..end];
            parts.push(match name {
                "clientid" => Part::ClientId,
                "username" => Part::Username,
                "topic" => Part::Topic,
                other => {
                    return Err(format!(
                        "unknown placeholder ${{{other}}} in {text:?} (known: {})",
                        PLACEHOLDERS.map(|p| format!("${{{p}}}")).join(", ")
                    ))
                }
            });
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template(parts))
    }

    fn is_literal(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Fills the placeholders; missing values render as empty text.
    pub fn render(&self, event: &Event) -> String {
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

pub fn check_topic_template(text: &str) -> Result<(), String> {
    let template = Template::parse(text)?;
    if template.is_literal() && sanitize_topic(text) != text {
        return Err(format!(
            "{text:?} is not a legal Kafka topic name (at most 249 of [a-zA-Z0-9._-])"
        ));
    }
    Ok(())
}

pub fn check_key(text: &str) -> Result<(), String> {
    KeySpec::parse(text).map(|_| ())
}

/// The Kafka topic of an event: fixed, or rendered from a template.
#[derive(Debug, Clone)]
pub enum TopicSpec {
    Fixed(Arc<str>),
    Template(Template),
}

impl TopicSpec {
    fn parse(text: &str) -> Result<TopicSpec, String> {
        let template = Template::parse(text)?;
        Ok(if template.is_literal() { TopicSpec::Fixed(text.into()) } else { TopicSpec::Template(template) })
    }

    pub fn resolve(&self, event: &Event) -> Arc<str> {
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
#[derive(Debug, Clone)]
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

    pub fn resolve<'e>(&self, event: &Event<'e>) -> Option<Cow<'e, str>> {
        match self {
            KeySpec::ClientId => event.clientid(),
            KeySpec::Topic => event.mqtt_topic().map(Cow::Borrowed),
            KeySpec::None => None,
            KeySpec::Template(template) => Some(Cow::Owned(template.render(event))),
        }
    }
}

#[derive(Debug)]
pub struct EventRoute {
    pub topic: TopicSpec,
    pub key: KeySpec,
    /// `None` means the default `["#"]`, checked without a trie walk.
    pub filters: Option<FilterTrie>,
}

#[derive(Debug)]
pub struct Route {
    pub topic: Option<TopicSpec>,
    pub key: Option<KeySpec>,
}

/// Everything the hot path needs to turn a hook call into a Kafka record.
#[derive(Debug)]
pub struct Routing {
    pub events: [Option<EventRoute>; 8],
    pub routes: Vec<Route>,
    pub route_trie: FilterTrie,
    pub format: Format,
    pub payload_encoding: PayloadEncoding,
    pub user_properties_headers: bool,
}

/// The outcome of routing one event.
pub struct Target<'e> {
    pub topic: Arc<str>,
    pub key: Option<Cow<'e, str>>,
}

impl Routing {
    pub fn compile(config: &Config) -> Result<Routing, String> {
        let mut events: [Option<EventRoute>; 8] = Default::default();
        for (kind, event) in &config.events {
            if !event.enable {
                continue;
            }
            let path = format!("events.{}", kind.config_name());
            let filters = if event.filters == ["#"] {
                None
            } else {
                Some(FilterTrie::new(event.filters.iter().map(String::as_str)))
            };
            events[kind.index()] = Some(EventRoute {
                topic: TopicSpec::parse(&event.topic).map_err(|e| format!("{path}.topic: {e}"))?,
                key: KeySpec::parse(&event.key).map_err(|e| format!("{path}.key: {e}"))?,
                filters,
            });
        }
        let mut routes = Vec::new();
        for (i, route) in config.routes.iter().enumerate() {
            let path = format!("routes[{}]", i + 1);
            routes.push(Route {
                topic: route.topic.as_deref().map(TopicSpec::parse).transpose().map_err(|e| format!("{path}.topic: {e}"))?,
                key: route.key.as_deref().map(KeySpec::parse).transpose().map_err(|e| format!("{path}.key: {e}"))?,
            });
        }
        Ok(Routing {
            events,
            routes,
            route_trie: FilterTrie::new(config.routes.iter().map(|r| r.filter.as_str())),
            format: config.format,
            payload_encoding: config.payload_encoding,
            user_properties_headers: config.user_properties_headers,
        })
    }

    /// The hook points with an enabled event, to register in EMQX.
    pub fn enabled(&self) -> Vec<EventKind> {
        EventKind::ALL.into_iter().filter(|k| self.events[k.index()].is_some()).collect()
    }

    /// Every Kafka topic name known without an event (for creating topics).
    pub fn fixed_topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self.events.iter().flatten().filter_map(|e| e.topic.fixed_name()).map(String::from).collect();
        names.extend(self.routes.iter().filter_map(|r| r.topic.as_ref()?.fixed_name().map(String::from)));
        names.sort();
        names.dedup();
        names
    }

    /// Where an event goes, or `None` when it is disabled or filtered out.
    pub fn target<'e>(&self, event: &Event<'e>) -> Option<Target<'e>> {
        let config = self.events[event.kind.index()].as_ref()?;
        let mqtt_topic = event.mqtt_topic();
        if event.kind.has_message() {
            let topic = mqtt_topic.unwrap_or_default();
            let passes = match &config.filters {
                None => !topic.starts_with('$'),
                Some(trie) => trie.matches(topic),
            };
            if !passes {
                return None;
            }
            if !self.route_trie.is_empty() {
                if let Some(route) = self.route_trie.first_match(topic).map(|i| &self.routes[i]) {
                    let topic = route.topic.as_ref().unwrap_or(&config.topic).resolve(event);
                    let key = route.key.as_ref().unwrap_or(&config.key).resolve(event);
                    return Some(Target { topic, key });
                }
            }
        }
        Some(Target { topic: config.topic.resolve(event), key: config.key.resolve(event) })
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
        assert!(check_topic_template("bad topic").is_err());
        assert!(KeySpec::parse("random").is_err());
    }
}
