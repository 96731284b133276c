//! Log lines from the bridge's own threads, handed to a `LogSink` (in the
//! VM, the NIF's, which relays them to an Erlang process that passes them
//! to `logger` as a report): a static `msg` (what happened, one snake_case
//! name per kind of line), the `reason` in words, and how many like it were
//! `suppressed`. Repeated lines are rate-limited per `msg` (and a detail
//! where one `msg` covers several kinds), so a broker outage yields a line
//! every few seconds, never one per message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Where log lines and a failure go.
pub trait LogSink: Send + Sync {
    fn line(&self, level: Level, msg: &'static str, reason: &str, suppressed: u64);
    /// The bridge failed and must restart.
    fn failure(&self, text: &str);
}

pub struct Logger {
    sink: Option<Box<dyn LogSink>>,
    windows: Mutex<HashMap<String, Window>>,
}

impl Logger {
    /// `None`: lines are dropped (no process to send them to).
    pub fn new(sink: Option<Box<dyn LogSink>>) -> Logger {
        Logger { sink, windows: Mutex::new(HashMap::new()) }
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
        if let Some(sink) = &self.sink {
            sink.failure(text);
        }
    }

    /// Sends one line, not rate-limited.
    pub fn log(&self, level: Level, msg: &'static str, reason: &str) {
        self.send(level, msg, reason, 0);
    }

    fn send(&self, level: Level, msg: &'static str, reason: &str, suppressed: u64) {
        if let Some(sink) = &self.sink {
            sink.line(level, msg, reason, suppressed);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct Lines(Mutex<Vec<(&'static str, String, u64)>>);

    struct Collect(Arc<Lines>);

    impl LogSink for Collect {
        fn line(&self, _level: Level, msg: &'static str, reason: &str, suppressed: u64) {
            self.0 .0.lock().unwrap().push((msg, reason.to_string(), suppressed));
        }
        fn failure(&self, _text: &str) {}
    }

    #[test]
    fn repeats_are_counted_and_reported_with_the_next_line() {
        let lines = Arc::new(Lines::default());
        let logger = Logger::new(Some(Box::new(Collect(lines.clone()))));
        for n in 0..5 {
            logger.limited(Level::Warning, "delivery_failed", "", &format!("attempt {n}"));
        }
        logger.limited(Level::Warning, "delivery_failed", "msg_timed_out", "other kind");
        assert_eq!(
            *lines.0.lock().unwrap(),
            [("delivery_failed", "attempt 0".to_string(), 0), ("delivery_failed", "other kind".to_string(), 0)]
        );
        // The quiet period has passed: the next line says how many were held back.
        for window in logger.windows.lock().unwrap().values_mut() {
            window.last -= QUIET_PERIOD;
        }
        logger.limited(Level::Warning, "delivery_failed", "", "later");
        assert_eq!(lines.0.lock().unwrap().last(), Some(&("delivery_failed", "later".to_string(), 4)));
    }
}
