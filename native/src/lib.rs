//! NIF entry points of emqx_plugin_kafka_bridge.
//!
//! Each function catches panics and returns `{error, Reason}` for bad input,
//! so nothing here can take the VM down. Calls that may wait (start, stop,
//! reconfigure) run on dirty I/O schedulers; `emit` runs on the caller's
//! scheduler and sends large payloads to `emit_dirty`.

// In the order data flows: the NIF boundary decodes a hook's arguments
// into an event, which is routed, encoded and queued by the bridge; the
// rest (the queue, the producer thread, the spool) is kafka_bridge_core.
mod nif;
mod terms;
mod event;
mod encode;
mod bridge;
mod log_sink;
mod work_budget;
mod allocator;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;

use rustler::{Atom, Encoder, Env, LocalPid, Term};

/// mimalloc for records, which are allocated on scheduler threads and
/// freed on the producer thread without an arena lock; the C library's
/// malloc for large blocks, which it gives back when they are freed.
#[global_allocator]
static ALLOCATOR: allocator::SplitAllocator = allocator::SplitAllocator;

use kafka_bridge_core::event_kind::EventKind;
use kafka_bridge_core::runtime::ConnectionState;
use kafka_bridge_core::{config, kafka, log, metrics};

use crate::bridge::{Bridge, Emitted};
use crate::event::{DecodeError, Event};
use crate::nif::handle;

mod atoms {
    rustler::atoms! {
        ok, error, dirty, filtered, dropped, not_a_bridge,
        connected, connecting, disconnected, failed,
        client_connected = "client.connected",
        client_disconnected = "client.disconnected",
        session_subscribed = "session.subscribed",
        session_unsubscribed = "session.unsubscribed",
        message_publish = "message.publish",
        message_delivered = "message.delivered",
        message_acked = "message.acked",
        message_dropped = "message.dropped",
    }
}

/// Payloads above this go to a dirty scheduler: encoding 64 KB takes well
/// under 1 ms, 1 MB can take longer.
const DIRTY_PAYLOAD_BYTES: usize = 64 * 1024;

fn kind_atom(kind: EventKind) -> Atom {
    match kind {
        EventKind::ClientConnected => atoms::client_connected(),
        EventKind::ClientDisconnected => atoms::client_disconnected(),
        EventKind::SessionSubscribed => atoms::session_subscribed(),
        EventKind::SessionUnsubscribed => atoms::session_unsubscribed(),
        EventKind::MessagePublish => atoms::message_publish(),
        EventKind::MessageDelivered => atoms::message_delivered(),
        EventKind::MessageAcked => atoms::message_acked(),
        EventKind::MessageDropped => atoms::message_dropped(),
    }
}

/// Atoms are compared as raw terms (`Atom == Term`), without a call into the VM.
fn kind_of(term: Term) -> Option<EventKind> {
    EventKind::ALL.into_iter().find(|k| kind_atom(*k) == term)
}

/// How many arguments each hook passes before its ExtraArgs.
fn arity(kind: EventKind) -> usize {
    match kind {
        EventKind::MessagePublish => 1,
        EventKind::ClientConnected | EventKind::MessageDelivered | EventKind::MessageAcked => 2,
        _ => 3,
    }
}

/// Runs `body`, turning an error or a panic into `{error, Reason}`.
fn guarded<'a>(env: Env<'a>, body: impl FnOnce() -> Result<Term<'a>, String>) -> Term<'a> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(term)) => term,
        Ok(Err(reason)) => (atoms::error(), reason).encode(env),
        Err(panic) => (atoms::error(), format!("internal error: {}", log::panic_text(&*panic))).encode(env),
    }
}

fn parse_config(term: Term) -> Result<config::Config, String> {
    let value = terms::to_json(term)?;
    let config = config::parse(&value)?;
    // Let librdkafka check every property now, so a typo fails the start.
    let client = kafka::client::client_config(&config.kafka, &config.buffer);
    client.create_native_config().map_err(|e| kafka::client::config_error(&e, &config.kafka))?;
    Ok(config)
}

fn enabled_hooks<'a>(env: Env<'a>, bridge: &Bridge) -> Term<'a> {
    bridge.routing().enabled().into_iter().map(kind_atom).collect::<Vec<Atom>>().encode(env)
}

/// `start(Config, Node, LogPid) -> {ok, Bridge, [HookPoint]} | {error, Reason}`
#[rustler::nif(schedule = "DirtyIo")]
fn start<'a>(env: Env<'a>, config: Term<'a>, node: Term<'a>, log_pid: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let config = parse_config(config)?;
        let node = terms::text(node).ok_or("node: expected an atom")?.into_owned();
        let sink = log_pid.decode::<LocalPid>().ok().map(|pid| Box::new(log_sink::ProcessSink(pid)) as Box<dyn log::LogSink>);
        let logger = log::Logger::new(sink);
        let bridge = Bridge::start(config, node, logger)?;
        let hooks = enabled_hooks(env, &bridge);
        Ok((atoms::ok(), handle::new_handle(env, bridge), hooks).encode(env))
    })
}

/// `validate(Config) -> ok | {error, Reason}`
#[rustler::nif(schedule = "DirtyCpu")]
fn validate<'a>(env: Env<'a>, config: Term<'a>) -> Term<'a> {
    guarded(env, || parse_config(config).map(|_| atoms::ok().encode(env)))
}

/// `reconfigure(Bridge, Config) -> {ok, [HookPoint]} | {error, Reason}`
#[rustler::nif(schedule = "DirtyIo")]
fn reconfigure<'a>(env: Env<'a>, bridge: Term<'a>, config: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let bridge = handle::bridge(bridge).ok_or("not a bridge")?;
        bridge.reconfigure(parse_config(config)?)?;
        Ok((atoms::ok(), enabled_hooks(env, bridge)).encode(env))
    })
}

/// `stop(Bridge) -> {ok, DroppedOnStop}`: flushes and joins the producer.
#[rustler::nif(schedule = "DirtyIo")]
fn stop<'a>(env: Env<'a>, bridge: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let bridge = handle::bridge(bridge).ok_or("not a bridge")?;
        Ok((atoms::ok(), bridge.stop()).encode(env))
    })
}

fn emit_impl<'a>(env: Env<'a>, args: &[Term<'a>], on_dirty: bool) -> Term<'a> {
    let units = (!on_dirty).then_some(work_budget::NORMAL_SCHEDULER_UNITS);
    work_budget::with_budget(units, || emit_counted(env, args, on_dirty))
}

/// Decodes, routes, encodes and queues one hook call, counting it once;
/// when the work budget runs out (see `work_budget`) it counts nothing
/// and returns `dirty`, and the dirty call counts the event.
fn emit_counted<'a>(env: Env<'a>, args: &[Term<'a>], on_dirty: bool) -> Term<'a> {
    guarded(env, || {
        // Borrowed for this call: no reference count to bump and drop.
        let Some(bridge) = handle::bridge(args[0]) else {
            // An atom the Erlang side counts: no counter here can see it.
            return Ok((atoms::error(), atoms::not_a_bridge()).encode(env));
        };
        let kind = kind_of(args[1]).ok_or("unknown hook point")?;
        let hook_args = &args[2..2 + arity(kind)];
        let inline_limit = (!on_dirty).then_some(DIRTY_PAYLOAD_BYTES);
        let event = match Event::decode(kind, hook_args, inline_limit) {
            Ok(event) => event,
            Err(DecodeError::NeedsDirty) => return Ok(atoms::dirty().encode(env)),
            Err(DecodeError::Invalid(_)) if work_budget::spent_out() => return Ok(atoms::dirty().encode(env)),
            Err(DecodeError::Invalid(reason)) => {
                metrics::inc(&bridge.shared.metrics.received);
                metrics::inc(&bridge.shared.metrics.dropped_invalid);
                return Err(reason.to_string());
            }
        };
        Ok(match bridge.emit(&event)? {
            Emitted::Enqueued => atoms::ok(),
            Emitted::FilteredOut => atoms::filtered(),
            Emitted::Dropped => atoms::dropped(),
            Emitted::NeedsDirty => atoms::dirty(),
        }
        .encode(env))
    })
}

/// `emit(Bridge, HookPoint, A1, A2, A3) -> ok | filtered | dropped | dirty | {error, Reason}`.
/// Unused arguments are `undefined`. `dirty` asks the caller to use `emit_dirty/5`.
#[rustler::nif]
fn emit<'a>(env: Env<'a>, bridge: Term<'a>, hook: Term<'a>, a1: Term<'a>, a2: Term<'a>, a3: Term<'a>) -> Term<'a> {
    emit_impl(env, &[bridge, hook, a1, a2, a3], false)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn emit_dirty<'a>(env: Env<'a>, bridge: Term<'a>, hook: Term<'a>, a1: Term<'a>, a2: Term<'a>, a3: Term<'a>) -> Term<'a> {
    emit_impl(env, &[bridge, hook, a1, a2, a3], true)
}

/// `metrics(Bridge) -> map()`
#[rustler::nif]
fn metrics<'a>(env: Env<'a>, bridge: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let bridge = handle::bridge(bridge).ok_or("not a bridge")?;
        let shared = &bridge.shared;
        let m = &shared.metrics;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
        let dropped = load(&m.dropped_queue_full)
            + load(&m.dropped_on_stop)
            + load(&m.dropped_invalid)
            + load(&m.dropped_spool_full)
            + load(&m.dropped_spool_error);
        let counters: Vec<(&str, u64)> = vec![
            ("received", load(&m.received)),
            ("filtered_out", load(&m.filtered_out)),
            ("enqueued", load(&m.enqueued)),
            ("dropped", dropped),
            ("dropped_queue_full", load(&m.dropped_queue_full)),
            ("dropped_on_stop", load(&m.dropped_on_stop)),
            ("dropped_invalid", load(&m.dropped_invalid)),
            ("delivered", load(&m.delivered)),
            ("failed", load(&m.failed)),
            ("retried", load(&m.retried)),
            ("requeued", load(&m.requeued)),
            ("queue_len", shared.queue_len()),
            ("queue_bytes", shared.queue.budget_used() as u64),
            ("inflight", load(&m.inflight)),
            ("spooled", load(&m.spooled)),
            ("dropped_spool_full", load(&m.dropped_spool_full)),
            ("dropped_spool_error", load(&m.dropped_spool_error)),
            ("spool_corrupt_records", load(&m.spool_corrupt_records)),
            ("spool_bytes", load(&m.spool_bytes)),
            ("spool_segments", load(&m.spool_segments)),
            ("spool_backlog_bytes", load(&m.spool_backlog_bytes)),
            ("token_refreshes", load(&m.token_refreshes)),
            ("token_refresh_failures", load(&m.token_refresh_failures)),
        ];
        let mut fields: Vec<(&str, Term<'a>)> =
            counters.into_iter().map(|(name, value)| (name, value.encode(env))).collect();
        let latency = [("p50", m.latency.quantile(0.50)), ("p99", m.latency.quantile(0.99))];
        fields.push(("delivery_latency_ms", atom_map(env, latency.map(|(q, ms)| (q, ms.encode(env))))?));
        let outcome = |(delivered, failed): (u64, u64)| {
            atom_map(env, [("delivered", delivered.encode(env)), ("failed", failed.encode(env))])
        };
        let metrics::TopicSnapshot { rows, other } = m.per_topic_snapshot();
        let mut topics = Term::map_new(env);
        for (topic, delivered, failed) in rows {
            let name = rustler::types::binary::NewBinary::from_slice(env, topic.as_bytes());
            topics = topics.map_put(Term::from(name), outcome((delivered, failed))?).map_err(|_| "map")?;
        }
        fields.push(("topics", topics));
        fields.push(("other_topics", outcome(other)?));
        atom_map(env, fields)
    })
}

/// `status(Bridge) -> #{state, last_error, ...}`
#[rustler::nif]
fn status<'a>(env: Env<'a>, bridge: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let bridge = handle::bridge(bridge).ok_or("not a bridge")?;
        let shared = &bridge.shared;
        let state = match shared.status.state.load() {
            ConnectionState::Connected => atoms::connected(),
            ConnectionState::Disconnected => atoms::disconnected(),
            ConnectionState::Failed => atoms::failed(),
            ConnectionState::Connecting => atoms::connecting(),
        };
        let fields: Vec<(&str, Term)> = vec![
            ("state", state.encode(env)),
            ("last_error", shared.status.last_error().encode(env)),
            ("running", bridge.is_running().encode(env)),
            ("queue_len", shared.queue_len().encode(env)),
            // What max_messages bounds: the queue plus, in memory mode, librdkafka.
            ("buffered", (shared.queue.held() as u64).encode(env)),
            ("queue_bytes", (shared.queue.budget_used() as u64).encode(env)),
            ("max_messages", (shared.queue.max_messages() as u64).encode(env)),
            ("max_bytes", (shared.queue.max_bytes() as u64).encode(env)),
            ("last_delivery_ms", shared.status.last_delivery_ms.load(Relaxed).encode(env)),
        ];
        let cluster = shared.status.cluster();
        let fields = fields.into_iter().chain([
            ("brokers_down", cluster.brokers_down.encode(env)),
            ("brokers_not_answering", cluster.brokers_not_answering.encode(env)),
            ("partitions_waiting", cluster.partitions_waiting.encode(env)),
            ("sign_in_error", shared.status.sign_in_error().encode(env)),
        ]);
        atom_map(env, fields)
    })
}

/// A map with atom keys, as `metrics/1` and `status/1` return them.
fn atom_map<'a>(env: Env<'a>, fields: impl IntoIterator<Item = (&'static str, Term<'a>)>) -> Result<Term<'a>, String> {
    let mut map = Term::map_new(env);
    for (name, value) in fields {
        let key = Atom::from_str(env, name).map_err(|_| format!("atom {name}"))?;
        map = map.map_put(key, value).map_err(|_| format!("map key {name}"))?;
    }
    Ok(map)
}

/// An empty NIF, for the benchmark's baseline.
#[rustler::nif]
fn noop(_term: Term) -> Atom {
    atoms::ok()
}
