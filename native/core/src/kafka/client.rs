//! librdkafka's client config for the bridge's settings, and its errors
//! in words that never echo a secret.

use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use crate::config::{is_secret, BufferConfig, BufferMode, KafkaConfig};
use crate::queue::nap_between_looks;

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
    if buffer.mode == BufferMode::Memory {
        // An invalid linger stays as written, for librdkafka to name it.
        if let Some(linger) = Linger::of(kafka) {
            config.set("linger.ms", (linger.librdkafka.as_micros() as f64 / 1000.0).to_string());
        }
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// How memory mode applies `linger.ms` (or its alias
/// `queue.buffering.max.ms`): the producer thread does the waiting. It hands
/// what the queue holds to librdkafka once per `handover_every`, and
/// librdkafka sends it within `librdkafka`. A batch gathers as long as
/// before, a record waits no longer (it used to wait for the thread's nap,
/// then for librdkafka's whole linger), and the thread wakes once per
/// linger instead of four times: a wake-up on cold caches costs more than
/// the records it moves at moderate rates (bench/NOTES.md).
pub struct Linger {
    pub handover_every: Duration,
    pub librdkafka: Duration,
}

/// librdkafka's linger after a hand-over: enough to put the whole hand-over
/// into one request per partition.
const SEND_WITHIN: Duration = Duration::from_millis(1);

impl Linger {
    /// None if the configured linger is not a valid duration.
    pub fn of(kafka: &KafkaConfig) -> Option<Linger> {
        let linger = kafka
            .properties
            .iter()
            .rev()
            .find(|(key, _)| key == "linger.ms" || key == "queue.buffering.max.ms")
            .and_then(|(_, value)| value.trim().parse::<f64>().ok())
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())?;
        let handover_every = nap_between_looks(linger);
        let librdkafka = linger.saturating_sub(handover_every).max(linger.min(SEND_WITHIN));
        Some(Linger { handover_every, librdkafka })
    }
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
        let every = |properties| Linger::of(&kafka(properties)).map(|l| l.handover_every);
        assert_eq!(every(json!({})), Some(Duration::from_millis(20)));
        assert_eq!(every(json!({"queue.buffering.max.ms": "7.5"})), Some(Duration::from_micros(7500)));
        assert_eq!(every(json!({"linger.ms": "soon"})), None);
    }

    #[test]
    fn memory_mode_waits_out_the_linger_before_librdkafka() {
        let split = |ms: &str| {
            let linger = Linger::of(&kafka(json!({ "linger.ms": ms }))).unwrap();
            (linger.handover_every.as_secs_f64() * 1000.0, linger.librdkafka.as_secs_f64() * 1000.0)
        };
        assert_eq!(split("20"), (20.0, 1.0));
        assert_eq!(split("0"), (1.0, 0.0));
        assert_eq!(split("0.5"), (1.0, 0.5));
        // Hand-overs stay frequent enough for the loop's other duties.
        assert_eq!(split("1000"), (100.0, 900.0));
        assert_eq!(split("7.5"), (7.5, 1.0));
    }

    #[test]
    fn librdkafka_gets_the_rest_of_the_linger_in_memory_mode_only() {
        let linger_set = |buffer: serde_json::Value| {
            let kafka = json!({"bootstrap_servers": "k:9092", "properties": {"linger.ms": "20"}});
            let config = crate::config::parse(&json!({"kafka": kafka, "buffer": buffer})).unwrap();
            client_config(&config.kafka, &config.buffer).get("linger.ms").map(str::to_string)
        };
        assert_eq!(linger_set(json!({})).as_deref(), Some("1"));
        assert_eq!(linger_set(json!({"mode": "disk"})).as_deref(), Some("20"));
        let kafka = json!({"bootstrap_servers": "k:9092", "properties": {"linger.ms": "soon"}});
        let invalid = crate::config::parse(&json!({"kafka": kafka})).unwrap();
        assert_eq!(client_config(&invalid.kafka, &invalid.buffer).get("linger.ms"), Some("soon"));
    }
}
