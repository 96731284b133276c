//! Test and benchmark helper that speaks to Kafka with the same rdkafka the
//! bridge uses, built with it by `make`.
//!
//! `kafka_tool consume BROKERS TOPIC EXPECT IDLE_MS OUT_FILE [key=value ...]`
//!   reads every partition of TOPIC from the beginning until EXPECT records
//!   arrived and every partition was read to its end, or nothing came for
//!   IDLE_MS, and writes to OUT_FILE, in
//!   Erlang's external term format (for `binary_to_term/1`), a list of
//!   `{record, Partition, Offset, Key | undefined, Value, Headers, Json}`
//!   where Headers is `[{Name, Value}]` and Json is the value decoded as
//!   JSON (maps with binary keys, `null` as the atom null) or `not_json`.
//!
//! `kafka_tool json-term FILE OUT_FILE`
//!   writes FILE's JSON to OUT_FILE as one term in the external term format
//!   (OTP 25 has no JSON module).
//!
//! `kafka_tool hocon-term FILE OUT_FILE`
//!   the same for a HOCON file (config.hocon), for the EMQX stand-in.
//!
//! `kafka_tool admin BROKERS create-topic|delete-topic|add-partitions|alter-topic ...`
//!   topic administration for the tests (admin.rs).
//!
//! `kafka_tool produce-raw BROKERS TOPIC FILE COUNT [key=value ...]`
//!   the benchmark's baseline (raw_batch.rs): sends COUNT records whose
//!   values are the lines of FILE (cycled), keyed like the bridge, with the
//!   given librdkafka properties, and prints `{raw, Count, Microseconds}.`
//!   once every delivery report is in.
//!
//! `kafka_tool produce-raw-paced BROKERS TOPIC FILE KEY RATE SECONDS HANDOVER_MS STAMP [key=value ...]`
//!   the paced benchmark's floor (raw_paced.rs): RATE records a second for
//!   SECONDS, all keyed KEY, handed over every HANDOVER_MS, and prints
//!   `{raw_paced, Records, CpuNanoseconds, WallMicroseconds}.`. STAMP is
//!   `none` (librdkafka stamps them, batch hand-over) or a Kafka timestamp
//!   in ms that every record carries (one `rd_kafka_producev` each).

mod admin;
mod etf;
mod raw_batch;
mod raw_paced;

use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("consume") if args.len() >= 6 => {
            consume(&args[1], &args[2], parse(&args[3]), parse(&args[4]), &args[5], &args[6..])
        }
        Some("admin") if args.len() >= 3 => admin::run(&args[1], &args[2..]),
        Some("json-term") if args.len() == 3 => json_term(&args[1], &args[2]),
        Some("hocon-term") if args.len() == 3 => hocon_term(&args[1], &args[2]),
        Some("produce-raw") if args.len() >= 5 => produce_raw(&args[1], &args[2], &args[3], parse(&args[4]), &args[5..]),
        Some("produce-raw-paced") if args.len() >= 9 => produce_raw_paced(&args[1..9], &args[9..]),
        _ => Err("usage: kafka_tool consume BROKERS TOPIC EXPECT IDLE_MS OUT [k=v ...] | admin BROKERS ... | json-term FILE OUT | hocon-term FILE OUT \
                  | produce-raw BROKERS TOPIC FILE COUNT [k=v ...] \
                  | produce-raw-paced BROKERS TOPIC FILE KEY RATE SECONDS HANDOVER_MS STAMP [k=v ...]"
            .into()),
    };
    if let Err(e) = result {
        eprintln!("kafka_tool: {e}");
        std::process::exit(1);
    }
}

fn parse(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

fn consume(brokers: &str, topic: &str, expect: u64, idle_ms: u64, out: &str, props: &[String]) -> Result<(), String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("kafka_tool_{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "true");
    set_properties(&mut config, props)?;
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    if partitions == 0 {
        return Err(format!("topic {topic} has no partitions"));
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;

    let mut records = Vec::new();
    let mut last = Instant::now();
    // Nothing more: with `expect` records read, the reader still goes on to
    // the end of every partition, so that a duplicate or a stray record
    // shows in the count; it stops there rather than waiting out IDLE_MS.
    let mut at_end = HashSet::new();
    while !(records.len() as u64 >= expect && at_end.len() == partitions) && last.elapsed() < Duration::from_millis(idle_ms) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                at_end.remove(&m.partition());
                let mut record = etf::Etf(Vec::new());
                record.tuple(8);
                record.atom("record");
                record.int(m.partition() as i64);
                record.int(m.offset());
                match m.key() {
                    Some(key) => record.binary(key),
                    None => record.atom("undefined"),
                }
                let value = m.payload().unwrap_or_default();
                record.binary(value);
                let headers: Vec<(&str, &[u8])> = m
                    .headers()
                    .map(|hs| hs.iter().map(|h| (h.key, h.value.unwrap_or_default())).collect())
                    .unwrap_or_default();
                record.list(&headers, |term, (name, value)| {
                    term.tuple(2);
                    term.binary(name.as_bytes());
                    term.binary(value);
                });
                match serde_json::from_slice::<serde_json::Value>(value) {
                    Ok(v) => record.json(&v),
                    Err(_) => record.atom("not_json"),
                }
                // The record's timestamp (ms), as Kafka stored it.
                record.int(m.timestamp().to_millis().unwrap_or(-1));
                records.push(record.0);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("kafka_tool: consume: {e}"),
            None => {}
        }
    }
    let mut term = etf::Etf::new();
    term.list(&records, |term, record| term.0.extend_from_slice(record));
    std::fs::write(out, term.0).map_err(|e| e.to_string())
}

/// `key=value` arguments as librdkafka properties.
fn set_properties(config: &mut ClientConfig, props: &[String]) -> Result<(), String> {
    for prop in props {
        let (k, v) = prop.split_once('=').ok_or_else(|| format!("bad property {prop}"))?;
        config.set(k, v);
    }
    Ok(())
}

fn json_term(file: &str, out: &str) -> Result<(), String> {
    let text = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| format!("{file}: {e}"))?;
    write_term(&value, out)
}

fn hocon_term(file: &str, out: &str) -> Result<(), String> {
    let hocon = hocon::HoconLoader::new().load_file(file).and_then(|l| l.hocon()).map_err(|e| format!("{file}: {e}"))?;
    write_term(&hocon_json(hocon).map_err(|e| format!("{file}: {e}"))?, out)
}

fn hocon_json(value: hocon::Hocon) -> Result<serde_json::Value, String> {
    use hocon::Hocon;
    use serde_json::Value;
    Ok(match value {
        Hocon::Real(f) => f.into(),
        Hocon::Integer(i) => i.into(),
        Hocon::String(s) => s.into(),
        Hocon::Boolean(b) => b.into(),
        Hocon::Null => Value::Null,
        Hocon::Array(items) => Value::Array(items.into_iter().map(hocon_json).collect::<Result<_, _>>()?),
        Hocon::Hash(map) => {
            Value::Object(map.into_iter().map(|(k, v)| Ok((k, hocon_json(v)?))).collect::<Result<_, String>>()?)
        }
        Hocon::BadValue(e) => return Err(e.to_string()),
    })
}

fn write_term(value: &serde_json::Value, out: &str) -> Result<(), String> {
    let mut term = etf::Etf::new();
    term.json(value);
    std::fs::write(out, term.0).map_err(|e| format!("{out}: {e}"))
}

fn produce_raw_paced(args: &[String], props: &[String]) -> Result<(), String> {
    let [brokers, topic, file, key, rate, seconds, handover_ms, stamp] = args else {
        return Err("produce-raw-paced takes 8 arguments before the properties".into());
    };
    let stamp = match stamp.as_str() {
        "none" => None,
        ms => Some(ms.parse::<i64>().map_err(|_| format!("STAMP {ms:?} is neither none nor a timestamp in ms"))?),
    };
    let data = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let values = lines(&data, file)?;
    let config = producer_config(brokers, props)?;
    let duration = Duration::from_secs(parse(seconds));
    let handover = Duration::from_millis(parse(handover_ms));
    let run = raw_paced::produce(&config, topic, &values, key.as_bytes(), parse(rate), duration, handover, stamp)?;
    println!("{{raw_paced,{},{},{}}}.", run.records, run.cpu_ns, run.wall.as_micros());
    std::io::stdout().flush().ok();
    Ok(())
}

/// FILE's non-empty lines: the values to send.
fn lines<'a>(data: &'a [u8], file: &str) -> Result<Vec<&'a [u8]>, String> {
    let values: Vec<&[u8]> = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    if values.is_empty() {
        return Err(format!("{file} has no lines"));
    }
    Ok(values)
}

fn producer_config(brokers: &str, props: &[String]) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    set_properties(&mut config, props)?;
    Ok(config)
}

fn produce_raw(brokers: &str, topic: &str, file: &str, count: u64, props: &[String]) -> Result<(), String> {
    let data = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let values = lines(&data, file)?;
    let config = producer_config(brokers, props)?;
    let keys: Vec<String> = (0..64).map(|i| format!("client-{i}")).collect();
    let elapsed = raw_batch::produce(&config, topic, &values, &keys, count as usize)?;
    println!("{{raw,{count},{}}}.", elapsed.as_micros());
    std::io::stdout().flush().ok();
    Ok(())
}
