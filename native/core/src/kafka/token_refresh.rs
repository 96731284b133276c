//! Keeps a producer's SASL/OAUTHBEARER token fresh, from the producer
//! thread's polls: a hook never waits for it.
//!
//! The token is set here rather than from rdkafka's refresh callback,
//! which cannot pass SASL extensions (Confluent Cloud needs them).
//! librdkafka connects to no broker until it has a token, and keeps the
//! last one when a refresh fails; the records wait, within the buffer's
//! budget, until a token works.

use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::error::IsError;

use crate::clock::unix_ms;
use crate::log::Level;
use crate::runtime::{LastError, Shared};
use crate::sign_in::token::{Token, TokenSource};

/// A token is replaced once this share of its life has passed, as
/// librdkafka and Kafka's own clients do.
const REFRESH_AT_SHARE: f64 = 0.8;
/// A failed fetch is retried after this, doubling up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Numbers the producers in the order they were made (`Status::set_sign_in_error`).
static PRODUCERS_MADE: AtomicU64 = AtomicU64::new(1);

pub struct TokenRefresh {
    source: Arc<dyn TokenSource>,
    producer: u64,
    shared: Arc<Shared>,
    schedule: Mutex<Schedule>,
}

struct Schedule {
    next_at: Instant,
    retry: Duration,
}

impl TokenRefresh {
    pub fn new(source: Arc<dyn TokenSource>, shared: Arc<Shared>) -> TokenRefresh {
        let producer = PRODUCERS_MADE.fetch_add(1, Relaxed);
        TokenRefresh { source, producer, shared, schedule: Mutex::new(Schedule { next_at: Instant::now(), retry: FIRST_RETRY }) }
    }

    /// Fetches and sets a new token for `client` if one is due.
    pub fn tend(&self, client: *mut rdsys::rd_kafka_t) {
        let mut schedule = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() < schedule.next_at {
            return;
        }
        let now_ms = unix_ms() as i64;
        match self.source.fetch(now_ms).and_then(|token| set_token(client, &token).map(|()| token)) {
            Ok(token) => {
                let life_ms = (token.expires_at_ms - now_ms).max(0) as f64;
                schedule.next_at = Instant::now() + Duration::from_millis((life_ms * REFRESH_AT_SHARE) as u64).max(FIRST_RETRY);
                schedule.retry = FIRST_RETRY;
                self.shared.metrics.token_refreshes.fetch_add(1, Relaxed);
                self.shared.status.set_sign_in_error(self.producer, String::new());
            }
            Err(why) => {
                schedule.next_at = Instant::now() + schedule.retry;
                schedule.retry = (schedule.retry * 2).min(MAX_RETRY);
                let text = format!("Kafka sign-in: {why} ({}; the last token, if any, is kept until it expires)", self.source.describe());
                set_token_failure(client, &why);
                self.shared.metrics.token_refresh_failures.fetch_add(1, Relaxed);
                if self.shared.status.set_sign_in_error(self.producer, text.clone()) {
                    self.shared.status.set(LastError { text: text.clone(), settings: true });
                    self.shared.logger.limited(Level::Warning, "kafka_sign_in_failed", "", &text);
                }
            }
        }
    }
}

fn set_token(client: *mut rdsys::rd_kafka_t, token: &Token) -> Result<(), String> {
    let c_string = |text: &str, what: &str| CString::new(text).map_err(|_| format!("the {what} holds a NUL byte"));
    let value = c_string(&token.value, "token")?;
    let principal = c_string(&token.principal, "token's principal")?;
    let mut extensions = Vec::with_capacity(token.extensions.len() * 2);
    for (key, value) in &token.extensions {
        extensions.push(c_string(key, "extension name")?);
        extensions.push(c_string(value, "extension value")?);
    }
    let mut pointers: Vec<*const c_char> = extensions.iter().map(|s| s.as_ptr()).collect();
    let mut error = [0 as c_char; 512];
    // SAFETY: every pointer lives until the call returns; librdkafka copies them.
    let code = unsafe {
        rdsys::rd_kafka_oauthbearer_set_token(
            client,
            value.as_ptr(),
            token.expires_at_ms,
            principal.as_ptr(),
            pointers.as_mut_ptr(),
            pointers.len(),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if code.is_error() {
        // SAFETY: librdkafka NUL-terminates what it writes into the buffer.
        let text = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
        // Its text describes the token's shape, never echoes the token.
        return Err(format!("librdkafka refused the token: {text}"));
    }
    Ok(())
}

/// librdkafka keeps the last token and reports this when it has none.
fn set_token_failure(client: *mut rdsys::rd_kafka_t, why: &str) {
    let why = CString::new(why.replace('\0', " ")).unwrap_or_default();
    // SAFETY: `why` lives until the call returns; librdkafka copies it.
    unsafe {
        rdsys::rd_kafka_oauthbearer_set_token_failure(client, why.as_ptr());
    }
}
