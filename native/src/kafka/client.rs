//! librdkafka's client config for the bridge's settings, and its errors
//! in words that never echo a secret.

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
