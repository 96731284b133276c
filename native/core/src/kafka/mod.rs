//! Everything that talks to Kafka: librdkafka's client config, the
//! producer's context (errors, statistics), delivery reports per buffer
//! mode and the polling that serves them, fatal errors, the
//! zero-copy hand-off, the memory and spool loops, producer generations,
//! topic creation and the OAUTHBEARER token's refresh.

pub mod client;
pub mod context;
pub mod delivery;
pub mod fatal;
pub mod handoff;
pub mod in_flight;
pub mod lifecycle;
pub mod memory_loop;
pub mod polling;
pub mod producer;
pub mod renewal;
pub mod spool_loop;
pub mod token_refresh;
pub mod topic_creator;
#[cfg(test)]
mod mock_cluster_tests;
