//! The bridge's log lines and failure, sent to the Erlang process that
//! owns the bridge (`_server`), which passes them to `logger`.

use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};

use kafka_bridge_core::log::{Level, LogSink};

rustler::atoms! {
    emqx_plugin_kafka_bridge_log,
    emqx_plugin_kafka_bridge_failed,
    error,
    warning,
    info,
}

pub struct ProcessSink(pub LocalPid);

impl ProcessSink {
    /// Only the bridge's own threads send: a scheduler thread may not send
    /// from an `OwnedEnv`, and what it would have sent is dropped.
    fn send(&self, message: impl for<'a> FnOnce(Env<'a>) -> Term<'a>) {
        if !rustler::thread::is_scheduler_thread() {
            let _ = OwnedEnv::new().send_and_clear(&self.0, message);
        }
    }
}

impl LogSink for ProcessSink {
    fn line(&self, level: Level, msg: &'static str, reason: &str, suppressed: u64) {
        let level = match level {
            Level::Error => error(),
            Level::Warning => warning(),
            Level::Info => info(),
        };
        self.send(|env| (emqx_plugin_kafka_bridge_log(), level, msg, reason, suppressed).encode(env));
    }

    fn failure(&self, text: &str) {
        self.send(|env| (emqx_plugin_kafka_bridge_failed(), text).encode(env));
    }
}
