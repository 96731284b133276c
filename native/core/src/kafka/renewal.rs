//! Replaces a producer that has used many topics with a fresh one.
//!
//! librdkafka keeps every topic a producer has used until the producer is
//! destroyed (its metadata, partitions and statistics, and a metadata
//! request every few seconds for a topic that does not exist), and finds a
//! topic by walking a list of them all. With a templated topic
//! (`t_${clientid}`, a topic per client) memory, idle CPU and the cost of
//! each new topic grow without bound. A fresh producer knows no topics.
//!
//! The old producer is not stopped: it delivers what it holds while the
//! fresh one takes new records, and is destroyed once nothing of ours is
//! left in it. At most `MAX_DRAINING` drain at once; past that the caller
//! pauses (records wait in the queue or the spool, where `buffer.*` bounds
//! them). The spool thread's delivery window spans producers: it reads the
//! draining ones' reports through `poll_draining`'s callback.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, PurgeConfig};

use crate::kafka::handoff::{TopicNames, MAX_TOPICS};
use crate::log::Level;
use crate::kafka::context::Context;
use crate::kafka::polling::poll_ready;
use crate::runtime::Shared;

/// Replaced producers still delivering, at most.
const MAX_DRAINING: usize = 4;
/// How long a stop waits for the reports of what it purged.
const PURGE_REPORTS_WAIT: Duration = Duration::from_millis(500);

pub type MakeProducer = Box<dyn Fn() -> Result<BaseProducer<Context>, KafkaError> + Send>;

/// A replaced producer, with its topic handles, which go first.
pub struct Draining {
    pub names: TopicNames,
    pub producer: BaseProducer<Context>,
}

pub struct Renewal {
    make: MakeProducer,
    draining: Vec<Draining>,
}

impl Renewal {
    pub fn new(make: MakeProducer) -> Renewal {
        Renewal { make, draining: Vec::new() }
    }

    /// Whether the current producer is due for replacement but cannot be
    /// replaced yet: then the caller takes no new records.
    pub fn must_pause(&self, names: &TopicNames) -> bool {
        names.used() > MAX_TOPICS && self.draining.len() >= MAX_DRAINING
    }

    /// Renews `producer` if it is due, then says whether it may take
    /// another record (not while too many replaced ones still drain).
    pub fn may_produce(&mut self, producer: &mut BaseProducer<Context>, names: &mut TopicNames) -> bool {
        self.renew_if_due(producer, names);
        !self.must_pause(names)
    }

    /// Replaces `producer` (and its `names`) with a fresh one when it has
    /// used more than `MAX_TOPICS` topics.
    pub fn renew_if_due(&mut self, producer: &mut BaseProducer<Context>, names: &mut TopicNames) {
        if names.used() <= MAX_TOPICS || self.draining.len() >= MAX_DRAINING {
            return;
        }
        if let Ok(fresh) = (self.make)() {
            let names = std::mem::take(names);
            let producer = std::mem::replace(producer, fresh);
            self.draining.push(Draining { names, producer });
        }
    }

    /// Replaces a producer that hit a fatal error (see `fatal`) with a
    /// fresh one. What librdkafka still holds is purged: memory mode
    /// requeues it for the fresh producer (delivery.rs). Keeps the old one
    /// if no fresh one can be made.
    pub fn replace_fatal(&mut self, producer: &mut BaseProducer<Context>, names: &mut TopicNames) {
        let Ok(fresh) = (self.make)() else { return };
        let names = std::mem::take(names);
        let old = std::mem::replace(producer, fresh);
        old.purge(PurgeConfig::default().queue().inflight());
        poll_ready(&old);
        self.draining.push(Draining { names, producer: old });
    }

    /// Serves the replaced producers' delivery reports, shows each producer
    /// to `polled` (the spool thread takes its reports there), and destroys
    /// those that hold nothing more.
    pub fn poll_draining(&mut self, shared: &Shared, mut polled: impl FnMut(&BaseProducer<Context>)) {
        if self.draining.is_empty() {
            return;
        }
        let before = self.draining.len();
        self.draining.retain(|old| {
            poll_ready(&old.producer);
            polled(&old.producer);
            old.producer.in_flight_count() > 0
        });
        if self.draining.len() < before {
            crate::fast::libc_malloc::trim();
            let text = format!("kafka bridge: replaced a Kafka producer that had used more than {MAX_TOPICS} topics");
            shared.logger.limited(Level::Info, "kafka_producer_renewed", "", &text);
        }
    }

    /// The replaced producers still draining, for the caller's stop.
    pub fn into_draining(self) -> Vec<Draining> {
        self.draining
    }

    /// The replaced producers still draining.
    pub fn draining(&self) -> impl Iterator<Item = &BaseProducer<Context>> {
        self.draining.iter().map(|old| &old.producer)
    }

    /// On stop: takes back what `current` and the replaced producers still
    /// hold, all at once, and serves the purge's delivery reports (which
    /// librdkafka's threads send) until none holds anything or
    /// `PURGE_REPORTS_WAIT` has passed. `polled` sees each producer after
    /// each poll (the spool thread takes its reports there). None is
    /// destroyed here: `destroy_all` does that, side by side.
    pub fn purge_all(&self, current: &BaseProducer<Context>, mut polled: impl FnMut(&BaseProducer<Context>)) {
        let all = || std::iter::once(current).chain(self.draining());
        all().for_each(|producer| producer.purge(PurgeConfig::default().queue().inflight()));
        let until = Instant::now() + PURGE_REPORTS_WAIT;
        loop {
            let mut held = 0;
            for producer in all() {
                poll_ready(producer);
                polled(producer);
                held += producer.in_flight_count();
            }
            if held == 0 || Instant::now() >= until {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Destroys producers side by side, each on a thread of its own that is
/// joined before this returns: librdkafka's destroy waits for its own
/// threads to end, a noticeable part of a stop when one follows another.
pub fn destroy_all(producers: Vec<Draining>) {
    std::thread::scope(|scope| {
        for Draining { names, producer } in producers {
            // The topic handles go before the producer.
            drop(names);
            // Without a thread, the closure and the producer in it are
            // dropped right here.
            let _ = std::thread::Builder::new()
                .name("kafka_bridge_destroy".into())
                .spawn_scoped(scope, move || drop(producer));
        }
    });
}
