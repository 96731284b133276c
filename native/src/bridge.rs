//! One running bridge: routing, queue, producer and metrics, with the
//! life-cycle operations the Erlang side calls.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{BufferConfig, BufferMode, Config};
use crate::encode::{encode, EncodeOptions};
use crate::event::Event;
use crate::log::Logger;
use crate::metrics::inc;
use crate::producer::{ProducerHandle, Shared};
use crate::queue::{Pushed, Queue, Record};
use crate::routing::Routing;

thread_local! {
    static ENCODE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scheduler keeps at most this much encode buffer between calls.
const MAX_KEPT_BUFFER: usize = 256 * 1024;

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
}

/// What `emit` did with an event.
pub enum Emitted {
    Enqueued,
    FilteredOut,
    Dropped,
}

impl Bridge {
    pub fn start(config: Config, node: String, logger: Logger) -> Result<Bridge, String> {
        let routing = Routing::compile(&config)?;
        crate::libc_malloc::tune();
        let buffer = &config.buffer;
        let queue = match buffer.mode {
            BufferMode::Memory => Queue::new(buffer.max_messages, buffer.max_bytes, buffer.overflow),
            // The spool thread takes records from this queue as they come;
            // librdkafka holds the other half of the budget.
            BufferMode::Disk | BufferMode::Hybrid => {
                Queue::new((buffer.max_messages / 2).max(1), (buffer.max_bytes / 2).max(1), buffer.overflow)
            }
        };
        let shared = Arc::new(Shared::new(buffer.mode, queue, logger));
        let producer = ProducerHandle::start(shared.clone(), &config.kafka, &config.buffer, topics_to_create(&config, &routing))?;
        Ok(Bridge {
            shared,
            routing: ArcSwap::from_pointee(routing),
            node,
            control: Mutex::new(Control { config, producer: Some(producer) }),
            accepting: AtomicBool::new(true),
        })
    }

    pub fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.routing.load()
    }

    /// The hot path: route, encode, try-push. Never blocks.
    pub fn emit(&self, event: &Event) -> Result<Emitted, String> {
        let metrics = &self.shared.metrics;
        inc(&metrics.received);
        if !self.accepting.load(std::sync::atomic::Ordering::Relaxed) {
            inc(&metrics.dropped_on_stop);
            return Ok(Emitted::Dropped);
        }
        let routing = self.routing.load();
        let Some(target) = routing.target(event) else {
            inc(&metrics.filtered_out);
            return Ok(Emitted::FilteredOut);
        };
        let key = target.key.as_deref().map(str::as_bytes);
        let options = EncodeOptions {
            format: routing.format,
            payload_encoding: routing.payload_encoding,
            user_properties_headers: routing.user_properties_headers,
            node: &self.node,
        };
        // Encode into this scheduler thread's reused buffer, then copy into
        // an allocation of the record's size: the queue holds no slack.
        let (buf, headers) = ENCODE_BUFFER.with(|cell| {
            let mut scratch = cell.borrow_mut();
            scratch.clear();
            if let Some(key) = key {
                scratch.extend_from_slice(key);
            }
            let headers = encode(event, &options, &mut scratch)?;
            let buf = crate::record_buffer::copy_of(&scratch);
            if scratch.capacity() > MAX_KEPT_BUFFER {
                *scratch = Vec::new();
            }
            Ok::<_, String>((buf, headers))
        })
        .inspect_err(|_| inc(&metrics.dropped_invalid))?;
        let record = Record {
            topic: target.topic,
            buf,
            key_len: key.map(<[u8]>::len),
            headers,
            enqueued_at: std::time::Instant::now(),
        };
        Ok(match self.shared.queue.push(record, metrics) {
            Pushed::Ok => Emitted::Enqueued,
            Pushed::Dropped => Emitted::Dropped,
        })
    }

    /// Applies a new configuration live. Routing changes swap atomically;
    /// a Kafka change starts a new producer and retires the old one.
    pub fn reconfigure(&self, config: Config) -> Result<(), String> {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let old = &control.config;
        if let Some(key) = changed_at_start_key(&old.buffer, &config.buffer) {
            return Err(format!(
                "buffer.{key}: applies at start only (every buffer key but flush_timeout does): \
                 stop the plugin, change it, start it again"
            ));
        }
        let routing = Routing::compile(&config)?;
        if config.kafka != old.kafka && config.buffer.mode != BufferMode::Memory {
            // One thread owns the spool: stop it (what it holds stays on
            // disk) before the new producer opens the spool and replays.
            if let Some(old_producer) = control.producer.take() {
                old_producer.stop(Duration::from_millis(config.buffer.flush_timeout_ms));
            }
            let topics = topics_to_create(&config, &routing);
            match ProducerHandle::start(self.shared.clone(), &config.kafka, &config.buffer, topics) {
                Ok(new_producer) => control.producer = Some(new_producer),
                Err(error) => {
                    // Keep bridging with the old settings rather than none.
                    let old = &control.config;
                    let topics = topics_to_create(old, &Routing::compile(old)?);
                    control.producer = ProducerHandle::start(self.shared.clone(), &old.kafka, &old.buffer, topics).ok();
                    return Err(error);
                }
            }
            self.routing.store(Arc::new(routing));
        } else if config.kafka != old.kafka {
            let topics = topics_to_create(&config, &routing);
            let new_producer = ProducerHandle::start(self.shared.clone(), &config.kafka, &config.buffer, topics)?;
            self.routing.store(Arc::new(routing));
            if let Some(old_producer) = control.producer.replace(new_producer) {
                old_producer.retire(Duration::from_millis(config.buffer.flush_timeout_ms));
            }
        } else {
            self.routing.store(Arc::new(routing));
        }
        control.config = config;
        Ok(())
    }

    /// Stops accepting, flushes within `buffer.flush_timeout`, joins the
    /// producer thread. Returns how many events were dropped on stop.
    pub fn stop(&self) -> u64 {
        self.accepting.store(false, SeqCst);
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(producer) = control.producer.take() {
            producer.stop(Duration::from_millis(control.config.buffer.flush_timeout_ms));
        }
        self.shared.metrics.dropped_on_stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_running(&self) -> bool {
        self.accepting.load(SeqCst)
    }
}

impl Drop for Bridge {
    /// A bridge the VM garbage-collects without a stop still joins its thread.
    fn drop(&mut self) {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(producer) = control.producer.take() {
            producer.stop(Duration::ZERO);
        }
    }
}

/// The first buffer key, other than `flush_timeout`, that differs.
fn changed_at_start_key(old: &BufferConfig, new: &BufferConfig) -> Option<&'static str> {
    let (a, b) = (&old.spool, &new.spool);
    [
        ("max_messages", old.max_messages != new.max_messages),
        ("max_bytes", old.max_bytes != new.max_bytes),
        ("overflow", old.overflow != new.overflow),
        ("mode", old.mode != new.mode),
        ("dir", a.dir != b.dir),
        ("segment_bytes", a.segment_bytes != b.segment_bytes),
        ("max_disk_bytes", a.max_disk_bytes != b.max_disk_bytes),
        ("fsync", a.fsync != b.fsync),
        ("spill_after", a.spill_after_ms != b.spill_after_ms),
    ]
    .into_iter()
    .find_map(|(key, changed)| changed.then_some(key))
}

/// The fixed topic names to create, when `kafka.create_topics` is on.
fn topics_to_create(config: &Config, routing: &Routing) -> Vec<String> {
    if config.kafka.create_topics {
        routing.fixed_topics()
    } else {
        Vec::new()
    }
}
