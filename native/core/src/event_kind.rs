//! The eight EMQX hook points, and what routing reads of an event.
//!
//! The NIF decodes a hook's arguments into its own `Event`, which borrows
//! Erlang terms; routing and the topic and key templates see it only
//! through `EventFields`, so they are plain Rust and tested as such.

use std::borrow::Cow;

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

    /// The events that carry a message (`has_message`), which routes apply to.
    pub const MESSAGES: [EventKind; 4] =
        [EventKind::MessagePublish, EventKind::MessageDelivered, EventKind::MessageAcked, EventKind::MessageDropped];

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

/// What routing, topic templates and key templates read of an event.
pub trait EventFields<'e> {
    fn kind(&self) -> EventKind;
    /// The MQTT topic used for filters and routes: the message's topic, or
    /// the subscription's filter for session events.
    fn mqtt_topic(&self) -> Option<&'e str>;
    /// The client the event is about.
    fn clientid(&self) -> Option<Cow<'e, str>>;
    fn username(&self) -> Option<Cow<'e, str>>;
}

/// `EventKind` is the list of events; the Erlang callbacks, the NIF's hook
/// atoms and README's event table must name exactly the same ones. (The
/// config files and the form are checked in `config::shipped_files` and
/// test/config_schema_test.py.)
#[cfg(test)]
mod every_place_names_the_same_events {
    use super::EventKind;
    use crate::repo_file as repo;
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
    fn messages_are_the_events_with_a_message() {
        let with_message: Vec<EventKind> = EventKind::ALL.into_iter().filter(|k| k.has_message()).collect();
        assert_eq!(with_message, EventKind::MESSAGES);
    }

    #[test]
    fn erlang_callbacks() {
        let erl = std::fs::read_to_string(repo("erl_src/emqx_plugin_kafka_bridge.erl")).unwrap();
        assert_eq!(quoted(&erl, "callback(", "'", '\''), hook_points());
    }

    #[test]
    fn nif_hook_atoms() {
        let lib = std::fs::read_to_string(repo("native/src/lib.rs")).unwrap();
        let atoms: BTreeSet<String> =
            lib.lines().filter(|l| l.contains(" = \"") && l.trim_end().ends_with("\",")).filter_map(|l| l.split('"').nth(1)).map(String::from).collect();
        assert_eq!(atoms, hook_points());
    }

    #[test]
    fn readme_event_table() {
        let readme = std::fs::read_to_string(repo("README.md")).unwrap();
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
