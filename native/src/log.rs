//! Log lines from the bridge's own threads, relayed to an Erlang process that
//! passes them to `logger` as a report: a static `msg` (what happened, one
//! snake_case name per kind of line), the `reason` in words, and how many
//! like it were `suppressed`. Repeated lines are rate-limited per `msg` (and
//! a detail where one `msg` covers several kinds), so a broker outage yields
//! a line every few seconds, never one per message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustler::{Encoder, LocalPid, OwnedEnv};

rustler::atoms! {
    emqx_plugin_kafka_bridge_log,
    emqx_plugin_kafka_bridge_failed,
    error,
    warning,
    info,
}

const QUIET_PERIOD: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

struct Window {
    last: Instant,
    suppressed: u64,
}

pub struct Logger {
    pid: Option<LocalPid>,
    windows: Mutex<HashMap<String, Window>>,
}

impl Logger {
    pub fn new(pid: Option<LocalPid>) -> Logger {
        Logger { pid, windows: Mutex::new(HashMap::new()) }
    }

    /// Logs at most once per quiet period for each `msg` and `detail`.
    pub fn limited(&self, level: Level, msg: &'static str, detail: &str, reason: &str) {
        let category = if detail.is_empty() { msg.to_string() } else { format!("{msg}:{detail}") };
        let suppressed = {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            match windows.get_mut(&category) {
                Some(w) if w.last.elapsed() < QUIET_PERIOD => {
                    w.suppressed += 1;
                    return;
                }
                Some(w) => {
                    w.last = Instant::now();
                    std::mem::take(&mut w.suppressed)
                }
                None => {
                    windows.insert(category, Window { last: Instant::now(), suppressed: 0 });
                    0
                }
            }
        };
        self.send(level, msg, reason, suppressed);
    }

    /// Tells the owning process that the bridge failed and must restart.
    pub fn report_failure(&self, text: &str) {
        let Some(pid) = self.pid else { return };
        if rustler::thread::is_scheduler_thread() {
            return;
        }
        let _ = OwnedEnv::new().send_and_clear(&pid, |env| (emqx_plugin_kafka_bridge_failed(), text).encode(env));
    }

    /// Sends one line; only our own threads may call this (not a scheduler).
    pub fn log(&self, level: Level, msg: &'static str, reason: &str) {
        self.send(level, msg, reason, 0);
    }

    fn send(&self, level: Level, msg: &'static str, reason: &str, suppressed: u64) {
        let Some(pid) = self.pid else { return };
        if rustler::thread::is_scheduler_thread() {
            return;
        }
        let mut env = OwnedEnv::new();
        let _ = env.send_and_clear(&pid, |env| {
            let level = match level {
                Level::Error => error(),
                Level::Warning => warning(),
                Level::Info => info(),
            };
            (emqx_plugin_kafka_bridge_log(), level, msg, reason, suppressed).encode(env)
        });
    }
}

/// What a caught panic says: its message, when it has one.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}
