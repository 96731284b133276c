//! librdkafka's client config for the bridge's settings, and its errors
//! in words that never echo a secret.

use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use crate::config::{is_secret, BufferConfig, BufferMode, KafkaConfig};

/// librdkafka's share in disk and hybrid modes, at most.
const SPOOL_INFLIGHT_KBYTES: usize = 64 * 1024;
const SPOOL_INFLIGHT_MESSAGES: usize = 100_000;

/// librdkafka's client config for `kafka`. librdkafka's own queue gets half
/// of each budget: the rest stays in our queue, where `drop_oldest` can
/// still evict during an outage.
pub fn client_config(kafka: &KafkaConfig, buffer: &BufferConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    config.set("statistics.interval.ms", "1000");
    let (mut kbytes, mut messages) = (buffer.max_bytes / 2048, buffer.max_messages / 2);
    if buffer.mode != BufferMode::Memory {
        // The spool is the buffer: librdkafka only needs enough in flight to
        // keep the broker busy, and a small window reuses warm memory.
        (kbytes, messages) = (kbytes.min(SPOOL_INFLIGHT_KBYTES), messages.min(SPOOL_INFLIGHT_MESSAGES));
    }
    config.set("queue.buffering.max.kbytes", kbytes.clamp(1, 2_097_151).to_string());
    config.set("queue.buffering.max.messages", messages.clamp(1, 2_147_483_647).to_string());
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// How long librdkafka holds a partition's first record to batch more:
/// `linger.ms` or its alias `queue.buffering.max.ms` (librdkafka takes
/// fractions), zero if neither is a valid duration.
pub fn linger(kafka: &KafkaConfig) -> Duration {
    kafka
        .properties
        .iter()
        .rev()
        .find(|(key, _)| key == "linger.ms" || key == "queue.buffering.max.ms")
        .and_then(|(_, value)| value.trim().parse::<f64>().ok())
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .unwrap_or(Duration::ZERO)
}

/// Describes a librdkafka config error without ever echoing a secret.
pub fn config_error(error: &KafkaError, kafka: &KafkaConfig) -> String {
    let mut text = match error {
        KafkaError::ClientConfig(_, description, key, _) => format!("kafka.properties.{key}: {description}"),
        KafkaError::ClientCreation(description) => format!("kafka.properties: {description}"),
        other => format!("kafka: {other}"),
    };
    for (key, value) in &kafka.properties {
        if is_secret(key) && !value.is_empty() {
            text = text.replace(value.as_str(), "******");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kafka(properties: serde_json::Value) -> KafkaConfig {
        crate::config::parse(&json!({"kafka": {"bootstrap_servers": "k:9092", "properties": properties}})).unwrap().kafka
    }

    #[test]
    fn linger_is_read_from_either_name() {
        assert_eq!(linger(&kafka(json!({}))), Duration::from_millis(20));
        assert_eq!(linger(&kafka(json!({"linger.ms": "0"}))), Duration::ZERO);
        assert_eq!(linger(&kafka(json!({"queue.buffering.max.ms": "7.5"}))), Duration::from_micros(7500));
        assert_eq!(linger(&kafka(json!({"linger.ms": "soon"}))), Duration::ZERO);
    }
}
