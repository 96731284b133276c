//! The bridge's log lines and failure, sent to the Erlang process that
//! owns the bridge (`_server`), which passes them to `logger`.

use rustler::{Encoder, LocalPid, OwnedEnv};

use kafka_bridge_core::log::{Level, LogSink};

rustler::atoms! {
    emqx_plugin_kafka_bridge_log,
    emqx_plugin_kafka_bridge_failed,
    error,
    warning,
    info,
}

pub struct ProcessSink(pub LocalPid);

impl LogSink for ProcessSink {
    /// Only the bridge's own threads log: a scheduler thread may not send
    /// from an `OwnedEnv`, and its line is dropped.
    fn line(&self, level: Level, msg: &'static str, reason: &str, suppressed: u64) {
        if rustler::thread::is_scheduler_thread() {
            return;
        }
        let _ = OwnedEnv::new().send_and_clear(&self.0, |env| {
            let level = match level {
                Level::Error => error(),
                Level::Warning => warning(),
                Level::Info => info(),
            };
            (emqx_plugin_kafka_bridge_log(), level, msg, reason, suppressed).encode(env)
        });
    }

    fn failure(&self, text: &str) {
        if rustler::thread::is_scheduler_thread() {
            return;
        }
        let _ = OwnedEnv::new().send_and_clear(&self.0, |env| (emqx_plugin_kafka_bridge_failed(), text).encode(env));
    }
}
