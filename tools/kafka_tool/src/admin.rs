//! `kafka_tool admin BROKERS ...`: the topic administration the tests need,
//! through librdkafka's Admin API (a JVM start per call would cost a second
//! or more each):
//!
//! - `create-topic NAME PARTITIONS [config=value ...]`, with the broker's
//!   default replication factor; it returns once every partition has a
//!   leader in the metadata, so a producer started next finds the topic;
//! - `delete-topic NAME`, returning once the metadata no longer lists it;
//! - `add-partitions NAME TOTAL`;
//! - `alter-topic NAME config=value ...` (AlterConfigs: configs not named
//!   go back to the broker's defaults);
//! - `describe-topic NAME`: one line per partition on standard output,
//!   `PARTITION LEADER REPLICAS ISR END` (lists comma-separated, leader -1
//!   when it has none, END the partition's high watermark or -1 when its
//!   leader did not answer), as the answering broker's metadata has them.

use std::time::{Duration, Instant};

use futures_executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

const TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(brokers: &str, args: &[String]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(|e| e.to_string())?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT)).request_timeout(Some(TIMEOUT));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["create-topic", name, partitions, configs @ ..] => {
            let partitions: i32 = partitions.parse().map_err(|_| format!("not a partition count: {partitions}"))?;
            let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
            for (key, value) in pairs(configs)? {
                topic = topic.set(key, value);
            }
            one_result(block_on(admin.create_topics([&topic], &options)))?;
            wait_for_metadata(&admin, name, |count| count == Some(partitions as usize))
        }
        ["delete-topic", name] => {
            one_result(block_on(admin.delete_topics(&[name], &options)))?;
            wait_for_metadata(&admin, name, |count| count.is_none())
        }
        ["add-partitions", name, total] => {
            let total: usize = total.parse().map_err(|_| format!("not a partition count: {total}"))?;
            one_result(block_on(admin.create_partitions([&NewPartitions::new(name, total)], &options)))?;
            wait_for_metadata(&admin, name, |count| count == Some(total))
        }
        ["alter-topic", name, configs @ ..] => {
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
            for (key, value) in pairs(configs)? {
                alter = alter.set(key, value);
            }
            let results = block_on(admin.alter_configs([&alter], &options)).map_err(|e| e.to_string())?;
            match results.first() {
                Some(Ok(_)) => Ok(()),
                Some(Err((_, code))) => Err(format!("alter-topic {name}: {code:?}")),
                None => Err(format!("alter-topic {name}: no result")),
            }
        }
        ["describe-topic", name] => describe(brokers, &admin, name),
        _ => Err("admin takes create-topic NAME PARTITIONS [k=v ...] | delete-topic NAME \
                  | add-partitions NAME TOTAL | alter-topic NAME k=v ... | describe-topic NAME"
            .into()),
    }
}

fn describe(brokers: &str, admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<(), String> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(|e| e.to_string())?;
    let metadata = admin.inner().fetch_metadata(Some(topic), TIMEOUT).map_err(|e| e.to_string())?;
    let topic = metadata.topics().first().ok_or("no such topic")?;
    if let Some(error) = topic.error() {
        return Err(format!("{}: {error:?}", topic.name()));
    }
    let list = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for p in topic.partitions() {
        let end = consumer.fetch_watermarks(topic.name(), p.id(), Duration::from_secs(5)).map_or(-1, |(_, high)| high);
        println!("{} {} {} {} {end}", p.id(), p.leader(), list(p.replicas()), list(p.isr()));
    }
    Ok(())
}

fn pairs<'a>(args: &[&'a str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    args.iter().map(|a| a.split_once('=').ok_or_else(|| format!("not key=value: {a}"))).collect()
}

fn one_result(results: rdkafka::error::KafkaResult<Vec<Result<String, (String, RDKafkaErrorCode)>>>) -> Result<(), String> {
    match results.map_err(|e| e.to_string())?.first() {
        Some(Ok(_)) => Ok(()),
        Some(Err((name, code))) => Err(format!("{name}: {code:?}")),
        None => Err("no result".into()),
    }
}

/// Polls the metadata until `done` holds for the topic's partition count
/// (`None` when the broker does not list it), counting only partitions that
/// have a leader.
fn wait_for_metadata(admin: &AdminClient<DefaultClientContext>, topic: &str, done: impl Fn(Option<usize>) -> bool) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let count = match admin.inner().fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => metadata
                .topics()
                .first()
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().iter().filter(|p| p.leader() >= 0).count()),
            Err(_) => Some(usize::MAX),
        };
        if count != Some(usize::MAX) && done(count) {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            return Err(format!("{topic}: metadata still shows {count:?} partitions with a leader"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
