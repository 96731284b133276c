//! librdkafka's fatal errors. An idempotent producer that cannot go on
//! (most often: the principal may not write idempotently, so the broker
//! refuses it a producer id) stays unusable: every record handed to it
//! fails. So the producer loops stop handing records over while one is
//! fatal, say why in `status()`, and try a fresh producer every
//! `RETRY_AFTER`, which picks up an ACL granted meanwhile.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};

use crate::kafka::context::Context;
use crate::log::Level;
use crate::runtime::{ConnectionState, LastError, Shared};

/// How long a fatal producer is kept before a fresh one is tried: one
/// failed try costs a connection and a refused InitProducerId, and a
/// spool-mode retry restarts the bridge.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

pub enum Health {
    Usable,
    /// Fatal: hand nothing over, wait.
    Holding,
    /// Fatal for `RETRY_AFTER`: replace the producer now.
    RetryNow,
}

#[derive(Default)]
pub struct FatalWatch {
    since: Option<Instant>,
}

impl FatalWatch {
    pub fn check(&mut self, producer: &BaseProducer<Context>, shared: &Shared) -> Health {
        if self.since.is_none() && !producer.context().take_error_arrived() {
            return Health::Usable;
        }
        let Some((_, reason)) = producer.client().fatal_error() else {
            self.since = None;
            return Health::Usable;
        };
        match self.since {
            None => {
                self.since = Some(Instant::now());
                let text = describe(&reason);
                shared.status.state.store(ConnectionState::Disconnected);
                shared.status.set(LastError { text: text.clone(), settings: true });
                shared.logger.limited(Level::Error, "kafka_producer_fatal", "", &text);
                Health::Holding
            }
            Some(since) if since.elapsed() >= RETRY_AFTER => {
                self.since = None;
                Health::RetryNow
            }
            Some(_) => Health::Holding,
        }
    }
}

/// The fatal error in words an operator can act on.
fn describe(reason: &str) -> String {
    let lower = reason.to_ascii_lowercase();
    let hint = if lower.contains("idempotence") || lower.contains("cluster authorization") {
        "the principal may not write idempotently: grant it WRITE on the topics (Kafka 2.8 and later imply \
         IDEMPOTENT_WRITE from it) or IDEMPOTENT_WRITE on the cluster, or set kafka.properties \
         enable.idempotence = false"
    } else {
        "the Kafka producer cannot continue"
    };
    format!("{hint}; events wait in the buffer and a fresh producer is tried every {} s: {reason}", RETRY_AFTER.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_producer_id_names_the_acl_and_the_way_out() {
        let text = describe(
            "Failed to acquire idempotence PID from broker sasl_plaintext://127.0.0.1:1/1: Broker: Cluster authorization failed",
        );
        assert!(text.starts_with("the principal may not write idempotently"), "{text}");
        assert!(text.contains("enable.idempotence = false") && text.contains("Cluster authorization failed"), "{text}");
    }
}
