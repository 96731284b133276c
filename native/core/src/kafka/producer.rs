//! A producer generation: its thread, started on the bridge's queue in
//! memory mode or on a spool, and stopped or retired by the bridge.
//!
//! On a Kafka reconfiguration a new producer starts on the same queue while
//! the old one retires: it stops taking records, flushes what it holds and
//! hands anything it could not deliver back to the queue, so no accepted
//! event is lost by the switch.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use crate::config::{BufferConfig, BufferMode, KafkaConfig};
use crate::kafka::client::{client_config, config_error, Linger};
use crate::kafka::context::Context;
use crate::kafka::delivery::{Deliveries, MemoryDeliveries, SpoolDeliveries};
use crate::kafka::lifecycle::{AtomicLifecycle, Lifecycle};
use crate::kafka::renewal::{MakeProducer, Renewal};
use crate::kafka::token_refresh::TokenRefresh;
use crate::kafka::topic_creator::TopicCreator;
use crate::kafka::{memory_loop, spool_loop};
use crate::log::Level;
use crate::queue::MIN_NAP;
use crate::runtime::{ConnectionState, Shared};
use crate::sign_in;
use crate::spool::Spool;

/// Set in the environment a test VM is started with: the first memory
/// producer of the OS process panics on its first record, so the test can
/// check that a failed producer is reported and the bridge restarted. Read
/// once per producer start, never per record.
const INJECT_PANIC_ENV: &str = "EMQX_KAFKA_BRIDGE_TEST_PRODUCER_PANIC";
static PANIC_INJECTED: AtomicBool = AtomicBool::new(false);
/// How long `begin_retire` waits for the thread to stop taking records: a
/// turn of its loop takes milliseconds; a token fetch can hold it longer.
const TAKING_STOPS_WITHIN: Duration = Duration::from_secs(2);

/// A running producer generation.
pub struct ProducerHandle {
    lifecycle: Arc<AtomicLifecycle>,
    deadline: Arc<Mutex<Option<Instant>>>,
    thread: JoinHandle<()>,
}

impl ProducerHandle {
    /// Starts a producer; `create` names topics to create before producing.
    pub fn start(
        shared: Arc<Shared>,
        kafka: &KafkaConfig,
        buffer: &BufferConfig,
        create: Vec<String>,
    ) -> Result<ProducerHandle, String> {
        let lifecycle = Arc::new(AtomicLifecycle::new(Lifecycle::Run));
        // Opened here so an unusable buffer.dir fails the start itself.
        let spool = match buffer.mode {
            BufferMode::Memory => None,
            BufferMode::Disk | BufferMode::Hybrid => Some(Spool::open(&buffer.spool, shared.clone())?),
        };
        let token_source = sign_in::source(&kafka.sign_in)?;
        // Made before the producer's: the newer one's sign-in is what status shows.
        let admin_token_refresh = token_source.clone().map(|source| TokenRefresh::new(source, shared.clone()));
        let make: MakeProducer = {
            let (client, shared, lifecycle, spooling) =
                (client_config(kafka, buffer), shared.clone(), lifecycle.clone(), spool.is_some());
            let token_source = token_source.clone();
            Box::new(move || {
                let deliveries = if spooling {
                    Deliveries::Spool(SpoolDeliveries::default())
                } else {
                    Deliveries::Memory(MemoryDeliveries { lifecycle: lifecycle.clone() })
                };
                let token_refresh = token_source.clone().map(|source| TokenRefresh::new(source, shared.clone()));
                client.create_with_context(Context::new(shared.clone(), deliveries, token_refresh))
            })
        };
        let producer = make().map_err(|e| config_error(&e, kafka))?;
        let deadline = Arc::new(Mutex::new(None));
        let admin = if create.is_empty() {
            None
        } else {
            let admin: AdminClient<DefaultClientContext> =
                client_config(kafka, buffer).create().map_err(|e| config_error(&e, kafka))?;
            Some(TopicCreator::new(admin, admin_token_refresh, create, kafka.partitions, kafka.replication_factor))
        };
        let inject_panic =
            (std::env::var_os(INJECT_PANIC_ENV).is_some() && !PANIC_INJECTED.swap(true, SeqCst)).then_some(INJECT_PANIC_ENV);
        let spill_after = (buffer.mode == BufferMode::Hybrid).then(|| Duration::from_millis(buffer.spool.spill_after_ms));
        let overflow = buffer.overflow;
        let nap = Linger::of(kafka).map_or(MIN_NAP, |linger| linger.handover_every);
        let thread = {
            let (lifecycle, deadline) = (lifecycle.clone(), deadline.clone());
            std::thread::Builder::new()
                .name("kafka_bridge_producer".into())
                .spawn(move || {
                    let watched = shared.clone();
                    let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                        let renewal = Renewal::new(make);
                        if let Some(admin) = admin {
                            admin.create_until_done(&shared, &lifecycle);
                        }
                        match spool {
                            None => {
                                memory_loop::run(producer, renewal, shared, lifecycle, deadline, nap, inject_panic);
                                Ok(())
                            }
                            Some(spool) => {
                                let options = spool_loop::Options { spill_after, overflow };
                                spool_loop::run(producer, renewal, spool, options, lifecycle, deadline)
                            }
                        }
                    }));
                    match body {
                        Ok(Ok(())) => {}
                        Ok(Err(why)) => report_failure(&watched, &why),
                        Err(panic) => report_failure(&watched, &crate::log::panic_text(&*panic)),
                    }
                })
                .map_err(|e| format!("cannot start the producer thread: {e}"))?
        };
        Ok(ProducerHandle { lifecycle, deadline, thread })
    }

    /// Stops taking records, and returns once the thread has taken its
    /// last (one turn of its loop, at most `TAKING_STOPS_WITHIN`), so that
    /// every event after a reconfiguration goes by the new settings. The
    /// thread then flushes what librdkafka holds until `flush_timeout` has
    /// passed and hands the rest back to the queue for the next producer
    /// (memory mode only: spool modes stop and restart). `join` waits for
    /// it.
    pub fn begin_retire(&self, flush_timeout: Duration) {
        self.signal(Lifecycle::Retire, Instant::now() + flush_timeout);
        let until = Instant::now() + TAKING_STOPS_WITHIN;
        while !self.lifecycle.has_stopped_taking() && !self.thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Drains the queue into Kafka until the timeout, then drops what is left
    /// (counted as `dropped_on_stop`), and joins the thread.
    pub fn stop(self, flush_timeout: Duration) {
        self.signal(Lifecycle::Stop, Instant::now() + flush_timeout);
        self.join();
    }

    /// A retiring producer overtaken by the bridge's stop: it keeps to
    /// the earlier of its deadline and the stop's, and what it takes back
    /// after that is counted as `dropped_on_stop`, not handed back to a
    /// queue nothing drains any more.
    pub fn stop_retiring(&self, deadline: Instant) {
        let mut current = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        *current = Some(current.map_or(deadline, |d| d.min(deadline)));
        self.lifecycle.store(Lifecycle::Stop);
    }

    /// Whether the thread has ended (joining it will not wait).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    pub fn join(self) {
        // The thread only panics on a bug; the panic has been contained there.
        let _ = self.thread.join();
    }

    fn signal(&self, lifecycle: Lifecycle, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.lifecycle.store(lifecycle);
    }
}

/// A panic of the producer thread (a bug), or a spool-mode producer that
/// stayed fatal (`kafka::fatal`): status says failed and why, an error line
/// is logged, and the owning Erlang process is told, so that it
/// stops and its supervisor starts the bridge again. Hooks keep counting
/// until then; `Bridge::stop` counts what the thread left as dropped.
fn report_failure(shared: &Shared, why: &str) {
    let text = format!("kafka bridge: the Kafka producer thread failed ({why}); restarting the bridge");
    shared.status.state.store(ConnectionState::Failed);
    shared.status.set_error(text.clone());
    shared.logger.log(Level::Error, "kafka_producer_thread_failed", &text);
    shared.logger.report_failure(&text);
}
