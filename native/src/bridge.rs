//! One running bridge: routing, queue, producer and metrics, with the
//! life-cycle operations the Erlang side calls.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use kafka_bridge_core::config::{BufferConfig, BufferMode, Config};
use kafka_bridge_core::fast::record_buffer;
use kafka_bridge_core::kafka::producer::ProducerHandle;
use kafka_bridge_core::log::{Level, Logger};
use kafka_bridge_core::metrics::inc;
use kafka_bridge_core::queue::{Pushed, Queue, Record};
use kafka_bridge_core::routing::{Routing, Target};
use kafka_bridge_core::runtime::{ConnectionState, Shared};

use crate::encode::{encode, Encoded};
use crate::encode::options::EncodeOptions;
use crate::event::Event;
use crate::work_budget;

/// Replaced memory-mode producers still flushing, at most; a
/// reconfiguration past that waits for the oldest.
const MAX_RETIRING: usize = 4;

pub struct Bridge {
    pub shared: Arc<Shared>,
    routing: ArcSwap<Routing>,
    node: String,
    control: Mutex<Control>,
    accepting: AtomicBool,
}

/// What only the life-cycle calls touch.
struct Control {
    config: Config,
    producer: Option<ProducerHandle>,
    /// Memory-mode producers a memory-to-memory reconfiguration replaced,
    /// oldest first: each flushes within its `buffer.flush_timeout` and
    /// hands back what it could not deliver. The reconfiguration does not
    /// wait for that (EMQX 6 gives another node's `on_config_changed/2`
    /// 10 s, and with Kafka down a flush takes all of its timeout); the
    /// next one joins those that ended, a change of buffer mode and stop
    /// join them all.
    retiring: Vec<ProducerHandle>,
}

impl Control {
    /// Retires `producer` without waiting for it.
    fn retire(&mut self, producer: ProducerHandle, flush_timeout: Duration) {
        producer.begin_retire(flush_timeout);
        self.retiring.push(producer);
        let (ended, running): (Vec<_>, Vec<_>) = self.retiring.drain(..).partition(ProducerHandle::is_finished);
        self.retiring = running;
        ended.into_iter().for_each(ProducerHandle::join);
        while self.retiring.len() > MAX_RETIRING {
            self.retiring.remove(0).join();
        }
    }

    /// Ends every producer thread within `flush_timeout`: the retiring
    /// ones keep to it too, then the running one drains the queue (which
    /// holds what they handed back) and stops.
    fn stop_all(&mut self, flush_timeout: Duration) {
        let deadline = Instant::now() + flush_timeout;
        self.retiring.iter().for_each(|producer| producer.stop_retiring(deadline));
        self.retiring.drain(..).for_each(ProducerHandle::join);
        if let Some(producer) = self.producer.take() {
            producer.stop(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

/// What `emit` did with an event.
pub enum Emitted {
    Enqueued,
    FilteredOut,
    Dropped,
    /// The work budget of a normal scheduler ran out (`work_budget`):
    /// nothing was counted, the call is to be made on a dirty scheduler.
    NeedsDirty,
}

impl Bridge {
    pub fn start(config: Config, node: String, logger: Logger) -> Result<Bridge, String> {
        let routing = Routing::compile(&config);
        kafka_bridge_core::fast::libc_malloc::tune();
        let buffer = &config.buffer;
        let (max_messages, max_bytes) = buffer.queue_limits();
        let queue = Queue::new(max_messages, max_bytes, buffer.overflow);
        let shared = Arc::new(Shared::new(buffer.mode, queue, logger));
        let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, topics_to_create(&config, &routing))?;
        Ok(Bridge {
            shared,
            routing: ArcSwap::from_pointee(routing),
            node,
            control: Mutex::new(Control { config, producer: Some(producer), retiring: Vec::new() }),
            accepting: AtomicBool::new(true),
        })
    }

    pub fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.routing.load()
    }

    /// The hot path: route, encode, try-push. Never blocks.
    pub fn emit(&self, event: &Event) -> Result<Emitted, String> {
        let metrics = &self.shared.metrics;
        if !self.accepting.load(std::sync::atomic::Ordering::Relaxed) {
            inc(&metrics.received);
            inc(&metrics.dropped_on_stop);
            return Ok(Emitted::Dropped);
        }
        let routing = self.routing.load();
        let target = routing.target(event);
        let encoded = target.as_ref().map(|target| self.encode(event, &routing, target));
        // Counted only once the event is read whole, on this scheduler or a dirty one.
        if work_budget::spent_out() {
            return Ok(Emitted::NeedsDirty);
        }
        inc(&metrics.received);
        let (Some(target), Some(encoded)) = (target, encoded) else {
            inc(&metrics.filtered_out);
            return Ok(Emitted::FilteredOut);
        };
        let (buf, Encoded { headers, timestamp_ms }) = encoded.inspect_err(|_| inc(&metrics.dropped_invalid))?;
        let record = Record {
            topic: target.topic,
            buf,
            key_len: target.key.as_deref().map(str::len),
            headers,
            timestamp_ms,
            enqueued_at: std::time::Instant::now(),
        };
        Ok(match self.shared.queue.push(record, metrics) {
            Pushed::Ok => Emitted::Enqueued,
            Pushed::Dropped => Emitted::Dropped,
        })
    }

    /// The record's bytes (key, then value) and headers for `event`.
    fn encode(&self, event: &Event, routing: &Routing, target: &Target) -> Result<(Vec<u8>, Encoded), String> {
        let key = target.key.as_deref().map(str::as_bytes);
        let options = EncodeOptions {
            format: routing.format,
            payload_encoding: routing.payload_encoding,
            user_property_headers: routing.user_property_headers,
            node: &self.node,
        };
        // Straight into the record's own allocation: no copy at the end,
        // and the queue holds no slack (record_buffer::finish).
        let payload_len = event.message.as_ref().map_or(0, |message| message.payload.len());
        let mut buf = record_buffer::take(payload_len);
        if let Some(key) = key {
            buf.extend_from_slice(key);
        }
        let encoded = encode(event, &options, target, &mut buf)?;
        Ok((record_buffer::finish(buf), encoded))
    }

    /// Applies a new configuration live, every key included. Routing changes
    /// swap atomically. A Kafka or `buffer.*` change (other than
    /// `flush_timeout`) replaces the producer without losing an accepted
    /// event: in memory mode the old producer hands back what it holds to
    /// the queue, in disk and hybrid modes it leaves it in the spool.
    /// If the new producer cannot start, the old settings keep running.
    pub fn reconfigure(&self, config: Config) -> Result<(), String> {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_running() {
            return Err("the bridge is stopped; a new config applies at its next start".into());
        }
        let routing = Routing::compile(&config);
        let old = control.config.clone();
        let flush_timeout = Duration::from_millis(config.buffer.flush_timeout_ms);
        if config.kafka == old.kafka && !old.buffer.needs_new_producer(&config.buffer) {
            self.routing.store(Arc::new(routing));
        } else if old.buffer.mode == BufferMode::Memory && config.buffer.mode == BufferMode::Memory {
            // The new producer starts before the old one retires, so the
            // queue is drained all along.
            self.apply_buffer_limits(&config.buffer);
            let topics = topics_to_create(&config, &routing);
            let new_producer = ProducerHandle::start(self.shared.clone(), &config.kafka, &config.buffer, topics)
                .inspect_err(|_| self.apply_buffer_limits(&old.buffer))?;
            self.routing.store(Arc::new(routing));
            if let Some(old_producer) = control.producer.replace(new_producer) {
                control.retire(old_producer, flush_timeout);
            }
        } else {
            // One thread at a time may own the spool: the old producer
            // finishes before the new one opens the spool and replays it.
            self.finish_producer(&mut control, &old.buffer, flush_timeout);
            self.apply_buffer_limits(&config.buffer);
            let topics = topics_to_create(&config, &routing);
            match ProducerHandle::start(self.shared.clone(), &config.kafka, &config.buffer, topics) {
                Ok(new_producer) => control.producer = Some(new_producer),
                Err(error) => {
                    // Keep bridging with the old settings rather than none.
                    self.apply_buffer_limits(&old.buffer);
                    let topics = topics_to_create(&old, &Routing::compile(&old));
                    control.producer = ProducerHandle::start(self.shared.clone(), &old.kafka, &old.buffer, topics).ok();
                    return Err(error);
                }
            }
            self.routing.store(Arc::new(routing));
            if old.buffer.mode != BufferMode::Memory && config.buffer.mode == BufferMode::Memory {
                self.note_spool_left_behind(&old.buffer);
            }
        }
        control.config = config;
        Ok(())
    }

    /// Ends the running producer generation: a memory-mode one retires
    /// (hands what it holds back to the queue), a spool one stops (what it
    /// holds stays in the spool).
    fn finish_producer(&self, control: &mut Control, buffer: &BufferConfig, flush_timeout: Duration) {
        // A change of buffer mode keeps its order: every memory-mode
        // producer has delivered or handed back what it held before the
        // next generation starts.
        control.retiring.drain(..).for_each(ProducerHandle::join);
        if let Some(producer) = control.producer.take() {
            match buffer.mode {
                BufferMode::Memory => {
                    producer.begin_retire(flush_timeout);
                    producer.join();
                }
                BufferMode::Disk | BufferMode::Hybrid => producer.stop(flush_timeout),
            }
        }
    }

    fn apply_buffer_limits(&self, buffer: &BufferConfig) {
        let (max_messages, max_bytes) = buffer.queue_limits();
        self.shared.queue.set_limits(max_messages, max_bytes, buffer.overflow);
        self.shared.set_mode(buffer.mode);
    }

    /// Memory mode never reads the spool: say what stays there and when it
    /// is sent.
    fn note_spool_left_behind(&self, old: &BufferConfig) {
        let left = self.shared.metrics.spool_backlog_bytes.load(std::sync::atomic::Ordering::Relaxed);
        if left > 0 {
            let text = format!(
                "kafka bridge: buffer.mode is now memory; {left} bytes of undelivered events stay in the spool \
                 ({}) and are sent when disk or hybrid mode is on again",
                old.spool.dir
            );
            self.shared.logger.limited(Level::Warning, "spool_left_behind", "", &text);
        }
    }

    /// Stops accepting, flushes within `buffer.flush_timeout`, joins the
    /// producer threads. Returns how many events were dropped on stop.
    pub fn stop(&self) -> u64 {
        self.accepting.store(false, SeqCst);
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let flush_timeout = Duration::from_millis(control.config.buffer.flush_timeout_ms);
        control.stop_all(flush_timeout);
        // Every thread has ended; what is left is lost, and counted.
        let lost = if self.shared.status.state.load() == ConnectionState::Failed {
            // The failed thread drained nothing: the whole budget (the
            // queue, its batch).
            self.shared.queue.discard_all()
        } else {
            // A retiring producer may hand back a record after the
            // running one's last look at the queue.
            self.shared.queue.discard_queued()
        };
        self.shared.metrics.dropped_on_stop.fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
        self.shared.metrics.dropped_on_stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a producer thread is still to be stopped and joined.
    pub fn has_producer(&self) -> bool {
        let control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        control.producer.is_some() || !control.retiring.is_empty()
    }

    pub fn is_running(&self) -> bool {
        self.accepting.load(SeqCst)
    }
}

impl Drop for Bridge {
    /// A bridge the VM garbage-collects without a stop still joins its thread.
    fn drop(&mut self) {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        control.stop_all(Duration::ZERO);
    }
}

/// The fixed topic names to create, when `kafka.create_topics` is on.
fn topics_to_create(config: &Config, routing: &Routing) -> Vec<String> {
    if config.kafka.create_topics {
        routing.fixed_topics()
    } else {
        Vec::new()
    }
}
