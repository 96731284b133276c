//! Which events are bridged, to which Kafka topic, under which key.
//!
//! A `Routing` is compiled once per configuration and swapped atomically on
//! reload, so the hot path never parses anything.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::record_shape::{HeaderSpec, RecordShape, TimestampSpec, ValueSpec};
use crate::config::template::{KeySpec, TopicSpec};
use crate::config::topic_filter::FilterTrie;
use crate::config::{Config, Format, PayloadEncoding, RouteConfig, UserPropertyHeaders};
use crate::event_kind::{EventFields, EventKind};

#[derive(Debug)]
pub struct EventRoute {
    pub topic: TopicSpec,
    pub key: KeySpec,
    /// `None` means the default `["#"]`, checked without a trie walk.
    pub filters: Option<FilterTrie>,
    pub shape: RecordShape,
}

/// Everything the hot path needs to turn a hook call into a Kafka record.
#[derive(Debug)]
pub struct Routing {
    pub events: [Option<EventRoute>; 8],
    /// Each route's own settings (`None` takes the event's), in the
    /// order of `route_trie`'s indexes.
    pub routes: Vec<RouteConfig>,
    pub route_trie: FilterTrie,
    pub format: Format,
    pub payload_encoding: PayloadEncoding,
    pub user_property_headers: UserPropertyHeaders,
}

/// The outcome of routing one event.
pub struct Target<'r, 'e> {
    pub topic: Arc<str>,
    pub key: Option<Cow<'e, str>>,
    pub value: &'r ValueSpec,
    pub headers: &'r [HeaderSpec],
    pub timestamp: TimestampSpec,
}

impl Routing {
    /// The config was checked when it was parsed: nothing here can fail.
    pub fn compile(config: &Config) -> Routing {
        let mut events: [Option<EventRoute>; 8] = Default::default();
        for (kind, event) in &config.events {
            if !event.enable {
                continue;
            }
            let filters = if event.filters == ["#"] {
                None
            } else {
                Some(FilterTrie::new(event.filters.iter().map(String::as_str)))
            };
            events[kind.index()] = Some(EventRoute {
                topic: event.topic.clone(),
                key: event.key.clone(),
                filters,
                shape: event.shape.clone(),
            });
        }
        Routing {
            events,
            routes: config.routes.clone(),
            route_trie: FilterTrie::new(config.routes.iter().map(|r| r.filter.as_str())),
            format: config.format,
            payload_encoding: config.payload_encoding,
            user_property_headers: config.user_property_headers,
        }
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
    pub fn target<'e, E: EventFields<'e>>(&self, event: &E) -> Option<Target<'_, 'e>> {
        let kind = event.kind();
        let config = self.events[kind.index()].as_ref()?;
        let mqtt_topic = event.mqtt_topic();
        if kind.has_message() {
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
                    let shape = &config.shape;
                    return Some(Target {
                        topic: route.topic.as_ref().unwrap_or(&config.topic).resolve(event),
                        key: route.key.as_ref().unwrap_or(&config.key).resolve(event),
                        value: route.value.as_ref().unwrap_or(&shape.value),
                        headers: route.headers.as_deref().unwrap_or(&shape.headers),
                        timestamp: route.timestamp.unwrap_or(shape.timestamp),
                    });
                }
            }
        }
        let shape = &config.shape;
        Some(Target {
            topic: config.topic.resolve(event),
            key: config.key.resolve(event),
            value: &shape.value,
            headers: &shape.headers,
            timestamp: shape.timestamp,
        })
    }
}
