//! `kafka.create_topics`: creates the configured topics before the first
//! record is produced.
//!
//! It runs on the producer thread, so a broker that is down at start delays
//! delivery (events wait in the queue) but never the plugin's start. Only
//! failures that can pass (a timeout, a broker not ready) are retried; a
//! topic the broker refuses for good (invalid, not authorized, a policy) is
//! reported once and given up, so it never holds back the other topics.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::log::Level;
use crate::kafka::lifecycle::AtomicLifecycle;
use crate::kafka::token_refresh::TokenRefresh;
use crate::runtime::Shared;

const RETRY_AFTER: Duration = Duration::from_millis(500);

pub struct TopicCreator {
    admin: AdminClient<DefaultClientContext>,
    /// A token sign-in: the admin client needs its own token.
    token_refresh: Option<TokenRefresh>,
    names: Vec<String>,
    partitions: i32,
    replication: i32,
}

/// What became of one topic's creation.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    Retry(String),
    GivenUp(String),
}

impl TopicCreator {
    pub fn new(
        admin: AdminClient<DefaultClientContext>,
        token_refresh: Option<TokenRefresh>,
        names: Vec<String>,
        partitions: i32,
        replication: i32,
    ) -> Self {
        TopicCreator { admin, token_refresh, names, partitions, replication }
    }

    /// Returns once every topic exists or was given up, or the producer stops.
    pub fn create_until_done(self, shared: &Shared, lifecycle: &AtomicLifecycle) {
        let mut pending = self.names.clone();
        while !pending.is_empty() && lifecycle.is_running() {
            if let Some(token_refresh) = &self.token_refresh {
                token_refresh.tend(self.admin.inner().native_ptr());
            }
            let outcomes = self.try_create(&pending);
            pending.clear();
            for (name, outcome) in outcomes {
                match outcome {
                    Outcome::Done => {}
                    Outcome::Retry(text) => {
                        shared.logger.limited(Level::Warning, "kafka_topic_creation_retrying", "", &text);
                        shared.status.set_error(text);
                        pending.push(name);
                    }
                    Outcome::GivenUp(text) => {
                        shared.logger.log(Level::Error, "kafka_topic_creation_failed", &text);
                        shared.status.set_error(text);
                    }
                }
            }
            if !pending.is_empty() {
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }

    fn try_create(&self, names: &[String]) -> Vec<(String, Outcome)> {
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, self.partitions, TopicReplication::Fixed(self.replication)))
            .collect();
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        match futures_executor::block_on(self.admin.create_topics(&topics, &options)) {
            // The request itself failed (no broker answered): all of them again.
            Err(e) => {
                let text = format!("kafka.create_topics: cannot create topics {names:?}: {e}");
                names.iter().map(|n| (n.clone(), Outcome::Retry(text.clone()))).collect()
            }
            Ok(results) => results
                .into_iter()
                .map(|result| match result {
                    Ok(name) => (name, Outcome::Done),
                    Err((name, code)) => {
                        let outcome = outcome_of(&name, code);
                        (name, outcome)
                    }
                })
                .collect(),
        }
    }
}

fn outcome_of(name: &str, code: RDKafkaErrorCode) -> Outcome {
    use RDKafkaErrorCode::*;
    match code {
        TopicAlreadyExists => Outcome::Done,
        // Kafka's retriable errors, and librdkafka's own for a broker it
        // could not reach in time.
        RequestTimedOut | OperationTimedOut | NotController | LeaderNotAvailable | BrokerNotAvailable
        | NetworkException | NotEnoughReplicas | CoordinatorNotAvailable | CoordinatorLoadInProgress
        | ThrottlingQuotaExceeded | KafkaStorageError | BrokerTransportFailure | AllBrokersDown | Unknown => Outcome::Retry(format!("kafka.create_topics: cannot create topic {name:?} yet: {code}")),
        _ => Outcome::GivenUp(format!(
            "kafka.create_topics: the broker refused to create topic {name:?} ({code}); \
             records for it wait until it exists, the other topics are not held back"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_good_are_given_up_and_passing_failures_retried() {
        use RDKafkaErrorCode::*;
        assert_eq!(outcome_of("t", TopicAlreadyExists), Outcome::Done);
        for code in [InvalidPartitions, InvalidReplicationFactor, PolicyViolation, TopicAuthorizationFailed, InvalidTopic] {
            assert!(matches!(outcome_of("t", code), Outcome::GivenUp(text) if text.contains("\"t\"")), "{code:?}");
        }
        for code in [RequestTimedOut, OperationTimedOut, NotController, AllBrokersDown] {
            assert!(matches!(outcome_of("t", code), Outcome::Retry(_)), "{code:?}");
        }
    }
}
