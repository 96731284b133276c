//! The producer's librdkafka context: the callbacks librdkafka calls on
//! the polling thread. Delivery reports go to the buffer mode's handler
//! (`delivery`); connection errors and statistics (`cluster_view`) set the
//! bridge's status.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::clock::unix_ms;
use crate::cluster_view::{ClusterWatch, Statistics};
use crate::kafka::delivery::{Deliveries, Report, Tally};
use crate::kafka::in_flight::{reclaim, Tag};
use crate::kafka::lifecycle::Lifecycle;
use crate::kafka::token_refresh::TokenRefresh;
use crate::log::Level;
use crate::runtime::{ConnectionState, LastError, Shared};

pub struct Context {
    shared: Arc<Shared>,
    retries_seen: AtomicI64,
    deliveries: Deliveries,
    /// The clock as of the current poll (ms since the bridge's epoch, Unix
    /// ms): one reading per poll instead of one per delivery report.
    poll_epoch_ms: AtomicU32,
    poll_unix_ms: AtomicI64,
    /// The reports of the current poll, added up.
    tally: Mutex<Tally>,
    /// librdkafka reported an error since `take_error_arrived`: only then
    /// is it asked whether one was fatal (`kafka::fatal`), which copies
    /// its text. Its error events carry the underlying code, not `Fatal`.
    error_arrived: AtomicBool,
    /// What the last statistics found, for the next (`cluster_view`).
    cluster_watch: Mutex<ClusterWatch>,
    /// SASL/OAUTHBEARER: the token this producer signs in with.
    token_refresh: Option<TokenRefresh>,
}

impl Context {
    pub fn new(shared: Arc<Shared>, deliveries: Deliveries, token_refresh: Option<TokenRefresh>) -> Context {
        Context {
            shared,
            retries_seen: AtomicI64::new(0),
            deliveries,
            poll_epoch_ms: AtomicU32::new(0),
            poll_unix_ms: AtomicI64::new(0),
            tally: Mutex::default(),
            error_arrived: AtomicBool::new(false),
            cluster_watch: Mutex::default(),
            token_refresh,
        }
    }

    pub fn token_refresh(&self) -> Option<&TokenRefresh> {
        self.token_refresh.as_ref()
    }

    /// A plain load first: the producer loops call this on every turn, and
    /// a swap would write the line every time.
    pub fn take_error_arrived(&self) -> bool {
        self.error_arrived.load(Relaxed) && self.error_arrived.swap(false, Relaxed)
    }

    /// Before a poll: reads the clock its delivery reports use.
    pub fn begin_poll(&self) {
        self.poll_epoch_ms.store(self.shared.millis_since_epoch(Instant::now()) as u32, Relaxed);
        self.poll_unix_ms.store(unix_ms() as i64, Relaxed);
    }

    /// After a poll: applies what its reports added up; false if none came.
    pub fn end_poll(&self) -> bool {
        let tally = std::mem::take(&mut *self.tally.lock().unwrap_or_else(|e| e.into_inner()));
        tally.apply(&self.shared, self.poll_unix_ms.load(Relaxed))
    }

    /// Spool modes: the reports gathered since the last call (none in
    /// memory mode, which settles them as they come).
    pub fn take_spool_reports(&self) -> Vec<Report> {
        match &self.deliveries {
            Deliveries::Spool(spool) => spool.take(),
            Deliveries::Memory(_) => Vec::new(),
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                Level::Error
            }
            RDKafkaLogLevel::Warning => Level::Warning,
            _ => return,
        };
        self.shared.logger.limited(level, "librdkafka_log", fac, &format!("librdkafka {fac}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        self.error_arrived.store(true, Relaxed);
        if !self.speaks_for_the_bridge() {
            return;
        }
        let status = &self.shared.status;
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            status.state.store(ConnectionState::Disconnected);
            // Keep the cause: "all brokers down" after a TLS or SASL failure
            // would hide what the operator has to fix.
            if status.last_error_is_settings() {
                return;
            }
        }
        let error = describe_connection_error(code, reason, self.token_refresh.is_some());
        self.shared.logger.limited(Level::Warning, "kafka_connection_problem", "", &format!("Kafka connection problem: {}", error.text));
        status.set(error);
    }

    /// Reads only what `cluster_view` needs: rdkafka's `Statistics`
    /// would allocate every field of every topic and partition on each
    /// interval.
    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(stats) = serde_json::from_slice::<Statistics>(statistics) {
            self.broker_stats(stats);
        }
    }
}

impl Context {
    /// Whether this producer's view of Kafka is the bridge's: not once its
    /// generation retires or stops. A memory-mode generation replaced by a
    /// reconfiguration flushes on in the background, to the old settings'
    /// brokers, and its teardown reports no broker up; written to the
    /// shared status, that would say the running one is down (and a spool
    /// producer, which delivers only while connected, would wait).
    fn speaks_for_the_bridge(&self) -> bool {
        match &self.deliveries {
            Deliveries::Memory(memory) => memory.lifecycle.load() == Lifecycle::Run,
            // Stopped before the next generation starts.
            Deliveries::Spool(_) => true,
        }
    }

    fn broker_stats(&self, stats: Statistics) {
        if !self.speaks_for_the_bridge() {
            return;
        }
        let status = &self.shared.status;
        if stats.any_broker_up() {
            status.state.store(ConnectionState::Connected);
        } else if status.state.load() == ConnectionState::Connected {
            status.state.store(ConnectionState::Disconnected);
        }
        let retries = stats.retries();
        let before = self.retries_seen.swap(retries as i64, Relaxed);
        if retries as i64 > before {
            self.shared.metrics.retried.fetch_add(retries - before as u64, Relaxed);
        }
        let view = self.cluster_watch.lock().unwrap_or_else(|e| e.into_inner()).view(&stats);
        status.set_cluster(view);
    }
}

impl ProducerContext for Context {
    /// The record's tag; its bytes are found from the report (`in_flight`).
    type DeliveryOpaque = Tag;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Tag) {
        let message = match result {
            Ok(message) | Err((_, message)) => message,
        };
        // SAFETY: every record is handed over by `handoff`, which lends its
        // buffer, and librdkafka reports each record once.
        let buf = unsafe { reclaim(&*message.ptr()) };
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        match &self.deliveries {
            Deliveries::Memory(memory) => {
                memory.report(&self.shared, &mut tally, self.poll_epoch_ms.load(Relaxed), result, tag, buf)
            }
            Deliveries::Spool(spool) => spool.report(&self.shared, &mut tally, result, tag, buf),
        }
    }
}

/// A librdkafka connection error in words an operator can act on. A TLS
/// failure may come as `_SSL` or, when the broker's alert arrives after the
/// handshake (TLS 1.3), as a transport failure: the reason tells.
fn describe_connection_error(code: Option<RDKafkaErrorCode>, reason: &str, token_sign_in: bool) -> LastError {
    use RDKafkaErrorCode::*;
    let lower = reason.to_ascii_lowercase();
    let tls_reason = if lower.contains("hostname mismatch") || lower.contains("host name mismatch") {
        Some("hostname mismatch: the broker's certificate is not for this host (kafka.ssl.verify_hostname)")
    } else if lower.contains("certificate verify failed") {
        Some("certificate verify failed: the broker's certificate is signed by no CA of kafka.ssl.ca (or, without it, of the system store)")
    } else if lower.contains("certificate required")
        || lower.contains("peer did not return a certificate")
        // What a Java broker (Apache Kafka) answers to a client that sent
        // no certificate, or one it does not trust.
        || lower.contains("alert bad certificate")
    {
        Some("no client certificate, or one the broker does not trust: it asks for one (kafka.ssl.certificate and kafka.ssl.key)")
    } else if code == Some(SSL) || lower.contains("ssl routines") || lower.contains("ssl handshake") {
        Some("see the reason")
    } else {
        None
    };
    let settings = |text| LastError { text, settings: true };
    let other = |text| LastError { text, settings: false };
    match (tls_reason, code) {
        (Some(why), _) => settings(format!("TLS handshake failed: {why}: {reason}")),
        (None, Some(Authentication | SaslAuthenticationFailed | UnsupportedSASLMechanism | IllegalSASLState)) if token_sign_in => {
            settings(describe_token_refusal(reason))
        }
        (None, Some(Authentication | SaslAuthenticationFailed | UnsupportedSASLMechanism | IllegalSASLState)) => settings(format!(
            "SASL authentication failed: wrong kafka.sasl.username or kafka.sasl.password, or kafka.sasl.mechanism \
             not enabled on the broker: {reason}"
        )),
        (None, Some(BrokerTransportFailure | AllBrokersDown | Resolve)) => other(format!("broker unreachable: {reason}")),
        (None, _) => other(reason.to_string()),
    }
}

/// An OAUTHBEARER failure: the token could not be had (kafka::token_refresh
/// set the cause), or the broker did not accept it.
fn describe_token_refusal(reason: &str) -> String {
    if reason.contains("Failed to acquire SASL OAUTHBEARER token") || reason.contains("no token available") {
        format!("Kafka sign-in: no token to sign in with: {reason}")
    } else {
        format!(
            "Kafka refused the token (SASL OAUTHBEARER): its audience, issuer, scope or signature is not what the \
             broker expects, or the mechanism is not enabled on the listener: {reason}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons librdkafka gives when a broker that requires a client
    /// certificate got none: an OpenSSL server's alert and a Java one's
    /// (Apache Kafka 4.1, TLS 1.3).
    #[test]
    fn a_missing_client_certificate_is_named_whoever_the_broker_is() {
        for reason in [
            "ssl://127.0.0.1:9093/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required",
            "ssl://127.0.0.1:9093/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls alert bad certificate: \
             SSL alert number 42 (after 0ms in state APIVERSION_QUERY)",
        ] {
            let error = describe_connection_error(Some(RDKafkaErrorCode::BrokerTransportFailure), reason, false);
            assert!(error.text.starts_with("TLS handshake failed: no client certificate"), "{}", error.text);
            assert!(error.settings);
        }
    }
}
