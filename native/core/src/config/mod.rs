//! The bridge's configuration: parsed and validated from the map that
//! `emqx_plugins:get_config/1` (or the application env) provides.
//!
//! Every error names the offending key with its dotted path, e.g.
//! `buffer.overflow: expected one of drop_new, drop_oldest, got "drop_all"`.

use serde_json::{Map, Value};

pub mod cloud_sign_in;
pub mod record_shape;
pub mod security;
pub mod template;
pub mod topic_filter;

use crate::event_kind::EventKind;
use cloud_sign_in::{AwsConfig, OAuthBearerConfig, TokenSignIn};
use record_shape::{check_header_name, HeaderSpec, RecordShape, RecordTemplate, TimestampSpec, ValueSpec};
use security::{SaslConfig, SaslMechanism, TlsConfig};
use template::{KeySpec, TopicSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Emqx,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadEncoding {
    Auto,
    Base64,
    Raw,
}

/// Which MQTT 5 User-Properties become Kafka record headers (`headers.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserPropertyHeaders {
    None,
    /// `traceparent` and `tracestate` only (`headers.trace_context`), so
    /// that OpenTelemetry-instrumented consumers continue the trace.
    TraceContext,
    /// Every pair (`headers.user_properties`), the trace context included.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    DropNew,
    DropOldest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// librdkafka properties, our defaults first, the operator's overrides after.
    pub properties: Vec<(String, String)>,
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// A token sign-in (OAUTHBEARER), which the producer thread keeps fresh.
    pub sign_in: TokenSignIn,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventConfig {
    pub enable: bool,
    pub topic: TopicSpec,
    pub key: KeySpec,
    /// Checked MQTT filters; `["#"]` is every topic.
    pub filters: Vec<String>,
    pub shape: RecordShape,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub filter: String,
    /// `None`: the event's own.
    pub topic: Option<TopicSpec>,
    pub key: Option<KeySpec>,
    pub value: Option<ValueSpec>,
    /// Replace the event's headers when given.
    pub headers: Option<Vec<HeaderSpec>>,
    pub timestamp: Option<TimestampSpec>,
}

/// Where accepted events wait for Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferMode {
    Memory,
    Disk,
    Hybrid,
}

/// When the spool calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    EveryBatch,
    IntervalMs(u64),
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub overflow: Overflow,
    pub flush_timeout_ms: u64,
    pub mode: BufferMode,
    pub spool: SpoolConfig,
}

impl BufferConfig {
    /// Whether a change to `new` needs a new producer: every key but
    /// `flush_timeout` shapes librdkafka's share of the budget or the spool.
    pub fn needs_new_producer(&self, new: &BufferConfig) -> bool {
        let ignoring_flush_timeout = BufferConfig { flush_timeout_ms: self.flush_timeout_ms, ..new.clone() };
        *self != ignoring_flush_timeout
    }

    /// The queue's share of the budget, as (messages, bytes). In disk and
    /// hybrid modes the spool thread takes records from the queue as they
    /// come, and librdkafka holds the other half.
    pub fn queue_limits(&self) -> (usize, usize) {
        match self.mode {
            BufferMode::Memory => (self.max_messages, self.max_bytes),
            BufferMode::Disk | BufferMode::Hybrid => ((self.max_messages / 2).max(1), (self.max_bytes / 2).max(1)),
        }
    }
}

/// The disk spool, used by the `disk` and `hybrid` modes.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// Empty: `data/kafka_bridge` (the Erlang side resolves it inside EMQX).
    pub dir: String,
    pub segment_bytes: u64,
    pub max_disk_bytes: u64,
    pub fsync: Fsync,
    pub spill_after_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub events: Vec<(EventKind, EventConfig)>,
    pub format: Format,
    pub payload_encoding: PayloadEncoding,
    pub user_property_headers: UserPropertyHeaders,
    pub routes: Vec<RouteConfig>,
    pub buffer: BufferConfig,
}

/// librdkafka settings that make delivery reliable; each can be overridden
/// through `kafka.properties`.
pub const DEFAULT_PROPERTIES: &[(&str, &str)] = &[
    ("acks", "all"),
    ("message.timeout.ms", "0"),
    // Batches big enough that librdkafka's cost per request stays small at
    // moderate rates, for at most this much added latency (bench/NOTES.md).
    ("linger.ms", "20"),
    ("compression.type", "lz4"),
    ("partitioner", "murmur2_random"),
    // As Kafka's own clients since 3.0: a retried batch is not written
    // twice, and order per partition holds across retries (librdkafka then
    // caps max.in.flight at 5 itself).
    ("enable.idempotence", "true"),
    // Room for a 1 MB MQTT payload encoded as base64 JSON; the topic's
    // max.message.bytes on the broker must allow it too.
    ("message.max.bytes", "2097152"),
    // A connection that a NAT gateway or load balancer (cloud Kafka) drops
    // while idle is found dead by TCP, not by the next request timing out.
    ("socket.keepalive.enable", "true"),
];

/// Properties whose values must never reach a log line, an error or status().
pub fn is_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    p.contains("password") || p.contains("secret") || p.ends_with(".key.pem") || p == "ssl.key.pem"
        || p.contains("sasl.oauthbearer.config")
}

pub const DEFAULT_MAX_MESSAGES: usize = 100_000;
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;
pub const DEFAULT_FLUSH_TIMEOUT_MS: u64 = 10_000;
/// Stop must end: the supervisor gives the server this plus a margin
/// (`SHUTDOWN_MS` in emqx_plugin_kafka_bridge_sup.erl, checked by a test).
pub const MAX_FLUSH_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_SPOOL_DIR: &str = "data/kafka_bridge";
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_DISK_BYTES: u64 = 10 << 30;
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_SPILL_AFTER_MS: u64 = 5000;
/// A segment holds at most this many bytes (record offsets stay in u32 range).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

fn default_event(kind: EventKind) -> EventConfig {
    use EventKind::*;
    let (enable, topic) = match kind {
        MessagePublish => (true, "emqx_messages"),
        ClientConnected | ClientDisconnected => (true, "emqx_client_events"),
        SessionSubscribed | SessionUnsubscribed => (true, "emqx_session_events"),
        MessageDelivered | MessageAcked | MessageDropped => (false, "emqx_message_events"),
    };
    EventConfig {
        enable,
        topic: TopicSpec::Fixed(topic.into()),
        key: KeySpec::ClientId,
        filters: vec!["#".into()],
        shape: RecordShape::default(),
    }
}

/// Reads one level of the config, remembering its path for error messages and
/// rejecting keys nobody asked for (a typo must not pass silently).
struct Section<'a> {
    path: String,
    map: &'a Map<String, Value>,
    seen: Vec<&'static str>,
}

impl<'a> Section<'a> {
    fn new(path: &str, value: Option<&'a Value>) -> Result<Section<'a>, String> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let map = match value {
            None | Some(Value::Null) => EMPTY.get_or_init(Map::new),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(format!("{}: expected a map, got {}", display_path(path), other)),
        };
        Ok(Section { path: path.to_string(), map, seen: Vec::new() })
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.seen.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn section(&mut self, key: &'static str) -> Result<Section<'a>, String> {
        let value = self.get(key);
        Section::new(&self.key_path(key), value)
    }

    fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(other) => Err(format!("{}: expected true or false, got {}", self.key_path(key), other)),
        }
    }

    fn string(&mut self, key: &'static str, default: Option<&str>) -> Result<String, String> {
        match (self.get(key), default) {
            (Some(Value::String(s)), _) if !s.is_empty() => Ok(s.clone()),
            (Some(other), _) => Err(format!("{}: expected a non-empty string, got {}", self.key_path(key), other)),
            (None, Some(default)) => Ok(default.to_string()),
            (None, None) => Err(format!("{}: is required", self.key_path(key))),
        }
    }

    /// A string that may be empty (its default). A secret's value is never
    /// put into the error.
    fn text(&mut self, key: &'static str, secret: bool) -> Result<String, String> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) if secret => Err(format!("{}: expected a string", self.key_path(key))),
            Some(other) => Err(format!("{}: expected a string, got {}", self.key_path(key), other)),
        }
    }

    fn choice<T: Copy>(&mut self, key: &'static str, options: &[(&str, T)], default: T) -> Result<T, String> {
        let Some(value) = self.get(key) else { return Ok(default) };
        let found = value.as_str().and_then(|s| options.iter().find(|(name, _)| *name == s));
        found.map(|(_, v)| *v).ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            format!("{}: expected one of {}, got {}", self.key_path(key), names.join(", "), value)
        })
    }

    /// An integer, or a string with a unit suffix from `units` ("256MB", "10s").
    fn quantity(&mut self, key: &'static str, units: &[(&str, u64)], min: u64, default: u64) -> Result<u64, String> {
        let Some(value) = self.get(key) else { return Ok(default) };
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => parse_with_unit(s, units),
            _ => None,
        };
        match parsed {
            Some(n) if n >= min => Ok(n),
            _ => Err(format!("{}: expected an integer >= {min}{}, got {}", self.key_path(key), unit_hint(units), value)),
        }
    }

    /// An integer in `min..=max`.
    fn at_most(&mut self, key: &'static str, min: u64, max: u64, default: u64) -> Result<u64, String> {
        let value = self.quantity(key, NO_UNITS, min, default)?;
        if value > max {
            return Err(format!("{}: expected an integer from {min} to {max}, got {value}", self.key_path(key)));
        }
        Ok(value)
    }

    fn string_list(&mut self, key: &'static str, default: &[&str]) -> Result<Vec<String>, String> {
        match self.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!("{}: expected a list of strings, got {}", self.key_path(key), other)),
                })
                .collect(),
            Some(other) => Err(format!("{}: expected a list of strings, got {}", self.key_path(key), other)),
        }
    }

    /// A record value (`record_shape::ValueSpec`) for events of `kinds`;
    /// `None` when absent or empty.
    fn value_spec(&mut self, key: &'static str, kinds: &[EventKind]) -> Result<Option<ValueSpec>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => ValueSpec::parse(s, kinds).map(Some).map_err(|e| format!("{}: {e}", self.key_path(key))),
            Some(other) => Err(format!("{}: expected a string, got {}", self.key_path(key), kind_of(other))),
        }
    }

    /// A list of `{key, value}` header templates; `None` when absent or empty.
    fn header_specs(&mut self, key: &'static str, kinds: &[EventKind]) -> Result<Option<Vec<HeaderSpec>>, String> {
        let items = match self.get(key) {
            None => return Ok(None),
            Some(Value::Array(items)) if items.is_empty() => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(format!("{}: expected a list of {{key, value}} headers, got {}", self.key_path(key), kind_of(other)))
            }
        };
        let mut headers = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{}]", self.key_path(key), i + 1);
            let mut header = Section::new(&path, Some(item))?;
            let name = header.text("key", false)?;
            check_header_name(&name).map_err(|e| format!("{path}.key: {e}"))?;
            let template = header.text("value", false)?;
            let value = RecordTemplate::text(&template, kinds).map_err(|e| format!("{path}.value: {e}"))?;
            header.finish()?;
            headers.push(HeaderSpec { name, value });
        }
        Ok(Some(headers))
    }

    /// Every key of a map whose values are strings (its keys are the
    /// operator's own, so none is unknown).
    fn string_values(self) -> Result<Vec<(String, String)>, String> {
        let mut pairs = Vec::new();
        for (key, value) in self.map {
            match value {
                Value::String(s) => pairs.push((key.clone(), s.clone())),
                other => return Err(format!("{}: expected a string, got {}", self.key_path(key), kind_of(other))),
            }
        }
        Ok(pairs)
    }

    /// Fails on any key that was never read.
    fn finish(self) -> Result<(), String> {
        for key in self.map.keys() {
            if !self.seen.contains(&key.as_str()) {
                let known = self.seen.join(", ");
                return Err(format!("{}: unknown key (known keys: {known})", self.key_path(key)));
            }
        }
        Ok(())
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "config"
    } else {
        path
    }
}

const BYTE_UNITS: &[(&str, u64)] = &[("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("B", 1)];
const TIME_UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1000), ("m", 60_000)];
const NO_UNITS: &[(&str, u64)] = &[];

fn parse_with_unit(s: &str, units: &[(&str, u64)]) -> Option<u64> {
    let s = s.trim();
    for (suffix, factor) in units {
        if let Some(number) = s.strip_suffix(suffix).or_else(|| s.strip_suffix(&suffix.to_lowercase())) {
            return number.trim().parse::<u64>().ok()?.checked_mul(*factor);
        }
    }
    s.parse().ok()
}

fn unit_hint(units: &[(&str, u64)]) -> String {
    if units.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = units.iter().map(|(n, _)| *n).collect();
        format!(" (optionally with a unit: {})", names.join(", "))
    }
}

/// Parses and validates the whole configuration.
pub fn parse(value: &Value) -> Result<Config, String> {
    let mut root = Section::new("", Some(value))?;

    let mut kafka_section = root.section("kafka")?;
    let bootstrap_servers = kafka_section.string("bootstrap_servers", None)?;
    check_bootstrap_servers(&bootstrap_servers).map_err(|e| format!("kafka.bootstrap_servers: {e}"))?;
    let mut overridden: Vec<(String, String)> = Vec::new();
    let overrides = kafka_section.section("properties")?;
    for (key, value) in overrides.map {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!("kafka.properties.{key}: expected a string, number or boolean, got {}", kind_of(other)))
            }
        };
        if key == "bootstrap.servers" {
            return Err("kafka.properties.bootstrap.servers: set kafka.bootstrap_servers instead".into());
        }
        overridden.push((key.clone(), value));
    }
    let mut ssl_section = kafka_section.section("ssl")?;
    let tls = TlsConfig {
        enable: ssl_section.bool("enable", false)?,
        ca: ssl_section.text("ca", false)?,
        certificate: ssl_section.text("certificate", false)?,
        key: ssl_section.text("key", true)?,
        key_password: ssl_section.text("key_password", true)?,
        verify_hostname: ssl_section.bool("verify_hostname", true)?,
    };
    ssl_section.finish()?;
    let mut sasl_section = kafka_section.section("sasl")?;
    let sasl = SaslConfig {
        mechanism: sasl_section.choice("mechanism", SaslMechanism::CHOICES, SaslMechanism::None)?,
        username: sasl_section.text("username", false)?,
        password: sasl_section.text("password", true)?,
    };
    let mut oauth_section = sasl_section.section("oauthbearer")?;
    let oauth = OAuthBearerConfig {
        token_endpoint: oauth_section.text("token_endpoint", false)?,
        client_id: oauth_section.text("client_id", false)?,
        client_secret: oauth_section.text("client_secret", true)?,
        scope: oauth_section.text("scope", false)?,
        extensions: oauth_section.section("extensions")?.string_values()?,
        ca: oauth_section.text("ca", false)?,
    };
    oauth_section.finish()?;
    let mut aws_section = sasl_section.section("aws")?;
    let aws = AwsConfig {
        region: aws_section.text("region", false)?,
        access_key_id: aws_section.text("access_key_id", false)?,
        secret_access_key: aws_section.text("secret_access_key", true)?,
        session_token: aws_section.text("session_token", true)?,
        profile: aws_section.text("profile", false)?,
        role_arn: aws_section.text("role_arn", false)?,
        imds_endpoint: aws_section.text("imds_endpoint", false)?,
        container_endpoint: aws_section.text("container_endpoint", false)?,
        sts_endpoint: aws_section.text("sts_endpoint", false)?,
    };
    aws_section.finish()?;
    sasl_section.finish()?;
    let sign_in = cloud_sign_in::check(sasl.mechanism, &oauth, &aws)?;
    // Ours first, then TLS and SASL, then the operator's own properties.
    let mut properties: Vec<(String, String)> =
        DEFAULT_PROPERTIES.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    properties.extend(security::properties(&tls, &sasl)?);
    for (key, value) in overridden {
        properties.retain(|(k, _)| *k != key);
        properties.push((key, value));
    }
    let create_topics = kafka_section.bool("create_topics", false)?;
    // Kafka's CreateTopics takes an int32 partition count and an int16
    // replication factor; larger values must not wrap.
    let partitions = kafka_section.at_most("partitions", 1, i32::MAX as u64, 3)? as i32;
    let replication_factor = kafka_section.at_most("replication_factor", 1, i16::MAX as u64, 1)? as i32;
    kafka_section.finish()?;

    let mut events_section = root.section("events")?;
    let mut events = Vec::new();
    for kind in EventKind::ALL {
        let defaults = default_event(kind);
        let mut section = events_section.section(kind.config_name())?;
        let enable = section.bool("enable", defaults.enable)?;
        let topic = match section.get("topic") {
            None => defaults.topic,
            Some(_) => TopicSpec::parse(&section.string("topic", None)?)
                .map_err(|e| format!("{}: {e}", section.key_path("topic")))?,
        };
        let key = match section.get("key") {
            None => defaults.key,
            Some(_) => KeySpec::parse(&section.string("key", None)?).map_err(|e| format!("{}: {e}", section.key_path("key")))?,
        };
        let filters = if kind.has_message() {
            let filters = section.string_list("filters", &["#"])?;
            for filter in &filters {
                topic_filter::validate(filter)
                    .map_err(|e| format!("{}: invalid filter {filter:?}: {e}", section.key_path("filters")))?;
            }
            filters
        } else {
            defaults.filters
        };
        let value = section.value_spec("value", &[kind])?.unwrap_or(ValueSpec::Event);
        let headers = section.header_specs("headers", &[kind])?.unwrap_or_default();
        let timestamp = section.choice("timestamp", TimestampSpec::CHOICES, TimestampSpec::Publish)?;
        section.finish()?;
        let shape = RecordShape { value, headers, timestamp };
        events.push((kind, EventConfig { enable, topic, key, filters, shape }));
    }
    events_section.finish()?;

    let format = root.choice("format", &[("emqx", Format::Emqx), ("legacy", Format::Legacy)], Format::Emqx)?;
    let payload_encoding = root.choice(
        "payload_encoding",
        &[("auto", PayloadEncoding::Auto), ("base64", PayloadEncoding::Base64), ("raw", PayloadEncoding::Raw)],
        PayloadEncoding::Auto,
    )?;
    let mut headers_section = root.section("headers")?;
    let user_property_headers = match (
        headers_section.bool("user_properties", false)?,
        headers_section.bool("trace_context", false)?,
    ) {
        (true, _) => UserPropertyHeaders::All,
        (false, true) => UserPropertyHeaders::TraceContext,
        (false, false) => UserPropertyHeaders::None,
    };
    headers_section.finish()?;

    let routes = parse_routes(root.get("routes"))?;

    let mut buffer_section = root.section("buffer")?;
    let max_messages = buffer_section.quantity("max_messages", NO_UNITS, 1, DEFAULT_MAX_MESSAGES as u64)? as usize;
    let max_bytes = buffer_section.quantity("max_bytes", BYTE_UNITS, 1024, DEFAULT_MAX_BYTES as u64)? as usize;
    let overflow = buffer_section.choice(
        "overflow",
        &[("drop_new", Overflow::DropNew), ("drop_oldest", Overflow::DropOldest)],
        Overflow::DropNew,
    )?;
    let flush_timeout_ms = buffer_section.quantity("flush_timeout", TIME_UNITS, 0, DEFAULT_FLUSH_TIMEOUT_MS)?;
    if flush_timeout_ms > MAX_FLUSH_TIMEOUT_MS {
        return Err(format!("buffer.flush_timeout: at most {MAX_FLUSH_TIMEOUT_MS} (5 minutes), got {flush_timeout_ms}"));
    }
    let mode = buffer_section.choice(
        "mode",
        &[("memory", BufferMode::Memory), ("disk", BufferMode::Disk), ("hybrid", BufferMode::Hybrid)],
        BufferMode::Memory,
    )?;
    let spool = parse_spool(&mut buffer_section)?;
    buffer_section.finish()?;
    root.finish()?;

    Ok(Config {
        kafka: KafkaConfig { bootstrap_servers, properties, create_topics, partitions, replication_factor, sign_in },
        events,
        format,
        payload_encoding,
        user_property_headers,
        routes,
        buffer: BufferConfig { max_messages, max_bytes, overflow, flush_timeout_ms, mode, spool },
    })
}

fn parse_spool(section: &mut Section) -> Result<SpoolConfig, String> {
    let dir = match section.get("dir") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("{}: expected a directory path, got {}", section.key_path("dir"), other)),
    };
    let segment_bytes = section.quantity("segment_bytes", BYTE_UNITS, 4096, DEFAULT_SEGMENT_BYTES)?;
    if segment_bytes > MAX_SEGMENT_BYTES {
        return Err(format!("{}: at most 1GB, got {segment_bytes}", section.key_path("segment_bytes")));
    }
    let max_disk_bytes = section.quantity("max_disk_bytes", BYTE_UNITS, 4096, DEFAULT_MAX_DISK_BYTES)?;
    if max_disk_bytes < segment_bytes {
        return Err(format!(
            "{}: must be at least buffer.segment_bytes ({segment_bytes}), got {max_disk_bytes}",
            section.key_path("max_disk_bytes")
        ));
    }
    let fsync = section.choice(
        "fsync",
        &[("every_batch", Fsync::EveryBatch), ("interval_ms", Fsync::IntervalMs(0)), ("none", Fsync::Never)],
        Fsync::EveryBatch,
    )?;
    let interval = section.quantity("fsync_interval", TIME_UNITS, 1, DEFAULT_FSYNC_INTERVAL_MS)?;
    let fsync = if fsync == Fsync::IntervalMs(0) { Fsync::IntervalMs(interval) } else { fsync };
    let spill_after_ms = section.quantity("spill_after", TIME_UNITS, 0, DEFAULT_SPILL_AFTER_MS)?;
    Ok(SpoolConfig { dir, segment_bytes, max_disk_bytes, fsync, spill_after_ms })
}

fn parse_routes(value: Option<&Value>) -> Result<Vec<RouteConfig>, String> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("routes: expected a list of routes, got {other}")),
    };
    let mut routes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("routes[{}]", i + 1);
        let mut section = Section::new(&path, Some(item))?;
        let filter = section.string("filter", None)?;
        topic_filter::validate(&filter).map_err(|e| format!("{path}.filter: invalid filter {filter:?}: {e}"))?;
        // Empty (config.hocon's default): the event's own topic, key, value,
        // headers or timestamp.
        let topic = match section.get("topic") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(_) => Some(TopicSpec::parse(&section.string("topic", None)?).map_err(|e| format!("{path}.topic: {e}"))?),
        };
        let key = match section.get("key") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(_) => Some(KeySpec::parse(&section.string("key", None)?).map_err(|e| format!("{path}.key: {e}"))?),
        };
        let value = section.value_spec("value", &EventKind::MESSAGES)?;
        let headers = section.header_specs("headers", &EventKind::MESSAGES)?;
        let timestamp = match section.get("timestamp") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(_) => Some(section.choice("timestamp", TimestampSpec::CHOICES, TimestampSpec::Publish)?),
        };
        section.finish()?;
        routes.push(RouteConfig { filter, topic, key, value, headers, timestamp });
    }
    Ok(routes)
}

/// The broker list as librdkafka reads it: comma-separated
/// `[scheme://]host[:port]`, the host a name, an IPv4 address or a
/// bracketed IPv6 address. The dashboard's pattern for the key accepts the
/// same shapes, so the form never refuses a list that would work.
fn check_bootstrap_servers(list: &str) -> Result<(), String> {
    for entry in list.split(',').map(str::trim) {
        let bad = || format!("expected host:port entries separated by commas, got {entry:?}");
        let address = match entry.split_once("://") {
            Some((scheme, rest)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic() || c == '_') => rest,
            Some(_) => return Err(bad()),
            None => entry,
        };
        let (host, port) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (inside, after) = bracketed.split_once(']').ok_or_else(bad)?;
                let port = if after.is_empty() { None } else { Some(after.strip_prefix(':').ok_or_else(bad)?) };
                if !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
                    return Err(bad());
                }
                (inside, port)
            }
            None => match address.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (address, None),
            },
        };
        let host_ok = !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || "/[],".contains(c));
        let port_ok = port.is_none_or(|p| {
            p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && matches!(p.parse::<u32>(), Ok(1..=65535))
        });
        if !host_ok || !port_ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"kafka": {"bootstrap_servers": "127.0.0.1:9092"}})
    }

    fn buffer(overrides: Value) -> BufferConfig {
        let mut value = minimal();
        value["buffer"] = overrides;
        parse(&value).unwrap().buffer
    }

    #[test]
    fn only_flush_timeout_keeps_the_producer() {
        let base = buffer(json!({}));
        assert!(!base.needs_new_producer(&buffer(json!({"flush_timeout": 1}))));
        for change in [
            json!({"max_messages": 7}),
            json!({"max_bytes": 1 << 24}),
            json!({"overflow": "drop_oldest"}),
            json!({"mode": "disk"}),
            json!({"dir": "/tmp/elsewhere"}),
            json!({"fsync": "none"}),
            json!({"spill_after": 1}),
        ] {
            assert!(base.needs_new_producer(&buffer(change.clone())), "{change}");
        }
    }

    #[test]
    fn spool_modes_give_the_queue_half_the_budget() {
        assert_eq!(buffer(json!({"max_messages": 10, "max_bytes": 1 << 24})).queue_limits(), (10, 1 << 24));
        let disk = buffer(json!({"mode": "disk", "max_messages": 10, "max_bytes": 1 << 24}));
        assert_eq!(disk.queue_limits(), (5, 1 << 23));
    }

    #[test]
    fn defaults_apply() {
        let config = parse(&minimal()).unwrap();
        assert_eq!(config.buffer.max_messages, 100_000);
        assert_eq!(config.buffer.max_bytes, 256 << 20);
        assert_eq!(config.buffer.flush_timeout_ms, 10_000);
        assert_eq!(config.buffer.mode, BufferMode::Memory);
        assert_eq!(config.buffer.spool.fsync, Fsync::EveryBatch);
        assert_eq!(config.buffer.spool.segment_bytes, 64 << 20);
        assert_eq!(config.buffer.spool.max_disk_bytes, 10 << 30);
        assert_eq!(config.format, Format::Emqx);
        let publish = &config.events.iter().find(|(k, _)| *k == EventKind::MessagePublish).unwrap().1;
        assert!(publish.enable);
        assert_eq!(publish.topic, TopicSpec::Fixed("emqx_messages".into()));
        let acked = &config.events.iter().find(|(k, _)| *k == EventKind::MessageAcked).unwrap().1;
        assert!(!acked.enable);
        assert!(config.kafka.properties.contains(&("acks".into(), "all".into())));
        assert!(config.kafka.properties.contains(&("message.timeout.ms".into(), "0".into())));
        assert!(config.kafka.properties.contains(&("socket.keepalive.enable".into(), "true".into())));
    }

    #[test]
    fn overrides_replace_defaults_and_units_parse() {
        let config = parse(&json!({
            "kafka": {"bootstrap_servers": "k:1", "properties": {"acks": "1", "batch.size": 1000}},
            "buffer": {"max_bytes": "16MB", "flush_timeout": "2s", "overflow": "drop_oldest"}
        }))
        .unwrap();
        let acks: Vec<_> = config.kafka.properties.iter().filter(|(k, _)| k == "acks").collect();
        assert_eq!(acks, vec![&("acks".to_string(), "1".to_string())]);
        assert!(config.kafka.properties.contains(&("batch.size".into(), "1000".into())));
        assert_eq!(config.buffer.max_bytes, 16 << 20);
        assert_eq!(config.buffer.flush_timeout_ms, 2000);
        assert_eq!(config.buffer.overflow, Overflow::DropOldest);
    }

    fn error_of(value: Value) -> String {
        parse(&value).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error_of(json!({})).starts_with("kafka.bootstrap_servers: is required"));
        assert!(error_of(json!({"kafka": {"bootstrap_servers": 5}})).starts_with("kafka.bootstrap_servers:"));
        let mut v = minimal();
        v["buffer"] = json!({"overflow": "drop_all"});
        assert!(error_of(v).contains("buffer.overflow: expected one of drop_new, drop_oldest, got \"drop_all\""));
        let mut v = minimal();
        v["events"] = json!({"message_publsh": {"enable": true}});
        assert!(error_of(v).starts_with("events.message_publsh: unknown key"));
        let mut v = minimal();
        v["events"] = json!({"message_publish": {"filters": ["a/#/b"]}});
        assert!(error_of(v).starts_with("events.message_publish.filters: invalid filter \"a/#/b\""));
        let mut v = minimal();
        v["format"] = json!("xml");
        assert!(error_of(v).starts_with("format: expected one of emqx, legacy"));
        let mut v = minimal();
        v["routes"] = json!([{"filter": "a/+", "topic": "t_${nope}"}]);
        assert!(error_of(v).starts_with("routes[1].topic: unknown placeholder ${nope}"));
        let mut v = minimal();
        v["buffer"] = json!({"max_messages": 0});
        assert!(error_of(v).starts_with("buffer.max_messages: expected an integer >= 1"));
        for (key, too_big) in [("partitions", 1u64 << 31), ("partitions", 1 << 32), ("replication_factor", 1 << 15)] {
            let mut v = minimal();
            v["kafka"][key] = json!(too_big);
            assert!(error_of(v).starts_with(&format!("kafka.{key}: expected an integer from 1 to")), "{key}");
        }
        let mut v = minimal();
        v["buffer"] = json!({"mode": "tape"});
        assert!(error_of(v).starts_with("buffer.mode: expected one of memory, disk, hybrid"));
        let mut v = minimal();
        v["buffer"] = json!({"fsync": "always"});
        assert!(error_of(v).starts_with("buffer.fsync: expected one of every_batch, interval_ms, none"));
        let mut v = minimal();
        v["buffer"] = json!({"segment_bytes": "1MB", "max_disk_bytes": "512KB"});
        assert!(error_of(v).starts_with("buffer.max_disk_bytes: must be at least buffer.segment_bytes"));
    }

    /// The supervisor's shutdown for the server is the longest flush plus
    /// a margin: a stop that hangs is killed, one that flushes is not.
    #[test]
    fn supervisor_shutdown_outlasts_the_longest_flush() {
        let sup = std::fs::read_to_string(crate::repo_file("erl_src/emqx_plugin_kafka_bridge_sup.erl")).unwrap();
        let line = sup.lines().find(|l| l.starts_with("-define(SHUTDOWN_MS,")).unwrap();
        let shutdown_ms: u64 = line.trim_start_matches("-define(SHUTDOWN_MS,").trim_end_matches(").").trim().parse().unwrap();
        let margin = shutdown_ms.checked_sub(MAX_FLUSH_TIMEOUT_MS).expect("shutdown shorter than the longest flush");
        assert!((5_000..=30_000).contains(&margin), "margin {margin} ms");
        assert!(sup.contains("shutdown => ?SHUTDOWN_MS"));
        let mut v = minimal();
        v["buffer"] = json!({"flush_timeout": MAX_FLUSH_TIMEOUT_MS + 1});
        assert!(error_of(v).starts_with("buffer.flush_timeout: at most 300000"));
    }

    #[test]
    fn fsync_interval_applies_only_to_interval_ms() {
        let mut v = minimal();
        v["buffer"] = json!({"mode": "disk", "fsync": "interval_ms", "fsync_interval": "250ms", "dir": "/tmp/x"});
        let config = parse(&v).unwrap();
        assert_eq!(config.buffer.spool.fsync, Fsync::IntervalMs(250));
        assert_eq!(config.buffer.mode, BufferMode::Disk);
        assert_eq!(config.buffer.spool.dir, "/tmp/x");
    }
}

/// The shipped `priv/config.hocon` and `priv/config_schema.avsc` must hold
/// every key, each with the parser's default.
#[cfg(test)]
mod shipped_files {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Value::Object(map) = value {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                if key != "properties" {
                    key_paths(child, &path, out);
                }
                out.insert(path);
            }
        }
    }

    /// The config an Avro reader would produce from the schema's defaults.
    fn avro_defaults(schema: &Value) -> Value {
        match schema.get("type") {
            Some(Value::String(t)) if t == "record" => {
                let mut out = serde_json::Map::new();
                for field in schema["fields"].as_array().unwrap() {
                    let name = field["name"].as_str().unwrap().to_string();
                    let value = match field.get("default") {
                        Some(default) => default.clone(),
                        None if field["type"].is_object() => avro_defaults(&field["type"]),
                        None => json!("127.0.0.1:9092"),
                    };
                    out.insert(name, value);
                }
                Value::Object(out)
            }
            _ => unreachable!("records only at the top of fields"),
        }
    }

    fn defaults() -> Config {
        parse(&json!({"kafka": {"bootstrap_servers": "127.0.0.1:9092"}})).unwrap()
    }

    fn hocon_value() -> Value {
        fn to_json(h: hocon::Hocon) -> Value {
            use hocon::Hocon::*;
            match h {
                Real(f) => json!(f),
                Integer(i) => json!(i),
                String(s) => json!(s),
                Boolean(b) => json!(b),
                Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
                Hash(map) => Value::Object(map.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
                Null => Value::Null,
                BadValue(e) => panic!("bad value in config.hocon: {e}"),
            }
        }
        to_json(hocon::HoconLoader::new().load_file(crate::repo_file("priv/config.hocon")).unwrap().hocon().unwrap())
    }

    #[test]
    fn config_hocon_is_exactly_the_defaults() {
        assert_eq!(parse(&hocon_value()).unwrap(), defaults());
    }

    /// Applies a case's overrides the way test/config_cases.json describes:
    /// maps merge, anything else replaces, "$delete" removes the key.
    fn merge(target: &mut Value, overrides: &Value) {
        match (target, overrides) {
            (Value::Object(target), Value::Object(overrides)) => {
                for (key, value) in overrides {
                    if value == "$delete" {
                        target.remove(key);
                    } else if let Some(existing) = target.get_mut(key) {
                        merge(existing, value);
                    } else {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
            (target, overrides) => *target = overrides.clone(),
        }
    }

    /// The plugin's column of the validation table that the schema test
    /// (test/config_schema_test.py) checks for the dashboard and EMQX.
    #[test]
    fn plugin_refuses_exactly_the_listed_cases() {
        let text = std::fs::read_to_string(crate::repo_file("test/config_cases.json")).unwrap();
        let cases: Value = serde_json::from_str(&text).unwrap();
        let mut wrong = Vec::new();
        for case in cases["cases"].as_array().unwrap() {
            let mut config = hocon_value();
            merge(&mut config, &case["overrides"]);
            let listed = case["rejected_by"].as_array().unwrap().iter().any(|layer| layer == "plugin");
            match parse(&config) {
                Ok(_) if listed => wrong.push(format!("{}: accepted", case["name"])),
                Err(e) if !listed => wrong.push(format!("{}: refused: {e}", case["name"])),
                _ => {}
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn avro_schema_defaults_match_and_cover_every_key() {
        let text = std::fs::read_to_string(crate::repo_file("priv/config_schema.avsc")).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        let from_schema = avro_defaults(&schema);
        assert_eq!(parse(&from_schema).unwrap(), defaults());
        let (mut in_schema, mut in_hocon) = (BTreeSet::new(), BTreeSet::new());
        key_paths(&from_schema, "", &mut in_schema);
        key_paths(&hocon_value(), "", &mut in_hocon);
        assert_eq!(in_schema, in_hocon);
    }
}
