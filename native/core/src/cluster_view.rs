//! What librdkafka's statistics (every `statistics.interval.ms`) say about
//! the cluster, for `status()`: brokers that are down, brokers that hold
//! requests unanswered (frozen, or a leader waiting for replicas it cannot
//! reach), and partitions holding records whose leader is missing, down or
//! not answering, or (with the idempotent producer, whose statistics say
//! what was acknowledged) whose leader answers but acknowledges nothing.
//! librdkafka retries all of these quietly; this is how an operator sees
//! them while they last.

use std::collections::HashMap;

use serde::Deserialize;

/// A connection attempt lasting longer than this is a broker down, not
/// one being connected to.
const CONNECTING_TOO_LONG_US: i64 = 1_000_000;
/// librdkafka leaves a broker it no longer needs (it leads no partition
/// the producer writes to) in DOWN after its connection ends; one that is
/// needed but unreachable leaves DOWN for a reconnect within
/// `reconnect.backoff.max.ms` (10 s by default).
const IDLE_DOWN_US: i64 = 15_000_000;
/// A broker that has sent nothing back for this long while requests wait
/// is not answering: a healthy one answers a produce request in
/// milliseconds.
const SILENT_TOO_LONG_US: i64 = 5_000_000;
/// Records held this long with none acknowledged make a partition wait.
const UNACKNOWLEDGED_TOO_LONG_US: i64 = 5_000_000;
/// Entries per list in `status()`, then one saying how many more.
const MAX_ENTRIES: usize = 10;

/// The part of librdkafka's statistics the bridge reads; every other field
/// is skipped unread.
#[derive(Deserialize)]
pub struct Statistics {
    /// librdkafka's monotonic clock, µs.
    ts: i64,
    brokers: HashMap<String, Broker>,
    #[serde(default)]
    topics: HashMap<String, Topic>,
    /// Present for the idempotent producer only: then `acked_msgid` counts.
    eos: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Broker {
    /// -1 for a bootstrap address not yet matched to a node.
    nodeid: i32,
    nodename: String,
    state: String,
    /// µs in `state`.
    stateage: i64,
    /// Requests sent and not answered yet.
    #[serde(default)]
    waitresp_cnt: i64,
    /// µs since the connection last received anything (-1: not up).
    #[serde(default)]
    rxidle: i64,
    txretries: u64,
}

#[derive(Deserialize)]
struct Topic {
    partitions: HashMap<String, Partition>,
}

#[derive(Deserialize)]
struct Partition {
    /// -1: librdkafka's queue for records not yet given a partition.
    partition: i32,
    leader: i32,
    msgq_cnt: i64,
    xmit_msgq_cnt: i64,
    msgs_inflight: i64,
    /// Records ever given to the partition: also the id of the last one.
    msgs: u64,
    /// Transmissions, retries included.
    txmsgs: u64,
    /// The last record the broker acknowledged (idempotent producer).
    #[serde(default)]
    acked_msgid: u64,
}

/// What one view remembers for the next: the nodes down, and each
/// partition's progress.
#[derive(Default)]
pub struct ClusterWatch {
    down: Vec<i32>,
    progress: HashMap<(String, i32), Progress>,
}

/// A partition with records not acknowledged (idempotent producer).
struct Progress {
    acked_msgid: u64,
    /// Since when `acked_msgid` has not moved (librdkafka's clock, µs).
    acked_since: i64,
    txmsgs: u64,
    /// When `txmsgs` last moved.
    sent_at: i64,
}

/// What `status()` shows of the cluster; empty lists when all is well.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct ClusterView {
    /// `"127.0.0.1:9092 (node 2)"`
    pub brokers_down: Vec<String>,
    /// `"127.0.0.1:9092 (node 1): 3 requests unanswered for 12 s"`
    pub brokers_not_answering: Vec<String>,
    /// `"emqx_messages [0]: 1200 records, leader 127.0.0.1:9092 (node 2) down"`
    pub partitions_waiting: Vec<String>,
}

impl Statistics {
    pub fn any_broker_up(&self) -> bool {
        self.brokers.values().any(|b| b.state == "UP")
    }

    /// Produce retries so far, over all brokers.
    pub fn retries(&self) -> u64 {
        self.brokers.values().map(|b| b.txretries).sum()
    }
}

impl ClusterWatch {
    /// The view these statistics give, remembering what the next needs.
    /// A node stays down until it is seen up again, so a broker refusing
    /// connections does not flicker as librdkafka cycles through its
    /// reconnect states.
    pub fn view(&mut self, stats: &Statistics) -> ClusterView {
        let mut nodes: Vec<&Broker> = stats.brokers.values().filter(|b| b.nodeid >= 0).collect();
        nodes.sort_by_key(|b| b.nodeid);
        let name = |b: &Broker| format!("{} (node {})", b.nodename, b.nodeid);
        let down: Vec<&Broker> = nodes.iter().copied().filter(|b| b.is_down(self.down.contains(&b.nodeid))).collect();
        let silent: Vec<&Broker> = nodes.iter().copied().filter(|b| b.is_silent()).collect();
        let find = |list: &[&Broker], id: i32| list.iter().find(|b| b.nodeid == id).map(|b| name(b));
        let mut progress = HashMap::new();
        let mut waiting: Vec<(&str, i32, u64, String)> = Vec::new();
        for (topic, t) in &stats.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                // Records waiting: those librdkafka holds for the partition,
                // and with the idempotent producer those given to it and not
                // acknowledged. A request librdkafka retries sits in its
                // broker's retry queue, where the partition's counts miss it.
                let unacknowledged = if stats.eos.is_some() { p.msgs.saturating_sub(p.acked_msgid) } else { 0 };
                let records = (p.held().max(0) as u64).max(unacknowledged);
                if records == 0 {
                    continue;
                }
                let key = (topic.clone(), p.partition);
                let mut entry = self.progress.remove(&key).unwrap_or(Progress {
                    acked_msgid: p.acked_msgid,
                    acked_since: stats.ts,
                    txmsgs: p.txmsgs,
                    sent_at: stats.ts,
                });
                if entry.acked_msgid != p.acked_msgid {
                    (entry.acked_msgid, entry.acked_since) = (p.acked_msgid, stats.ts);
                }
                if entry.txmsgs != p.txmsgs {
                    (entry.txmsgs, entry.sent_at) = (p.txmsgs, stats.ts);
                }
                // Still being sent, or held: not a gap a failed record left.
                let trying = p.held() > 0 || stats.ts - entry.sent_at < UNACKNOWLEDGED_TOO_LONG_US;
                let unacknowledged_us = stats.ts - entry.acked_since;
                progress.insert(key, entry);
                let reason = if p.leader < 0 {
                    Some("no leader".to_string())
                } else if let Some(leader) = find(&down, p.leader) {
                    Some(format!("leader {leader} down"))
                } else if let Some(leader) = find(&silent, p.leader) {
                    Some(format!("leader {leader} not answering"))
                } else if unacknowledged > 0 && trying && unacknowledged_us >= UNACKNOWLEDGED_TOO_LONG_US {
                    let leader = nodes.iter().find(|b| b.nodeid == p.leader).map_or(format!("node {}", p.leader), |b| name(b));
                    Some(format!(
                        "none acknowledged for {} s by leader {leader}, which answers: with acks=all, fewer replicas \
                         in sync than the topic's min.insync.replicas, or another error librdkafka retries",
                        unacknowledged_us / 1_000_000
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    waiting.push((topic, p.partition, records, reason));
                }
            }
        }
        self.progress = progress;
        waiting.sort();
        let mut view = ClusterView {
            brokers_down: down.iter().map(|b| name(b)).collect(),
            brokers_not_answering: silent
                .iter()
                .map(|b| format!("{}: {} requests unanswered for {} s", name(b), b.waitresp_cnt, b.rxidle / 1_000_000))
                .collect(),
            partitions_waiting: waiting
                .into_iter()
                .map(|(topic, partition, held, reason)| format!("{topic} [{partition}]: {held} records, {reason}"))
                .collect(),
        };
        for list in [&mut view.brokers_down, &mut view.brokers_not_answering, &mut view.partitions_waiting] {
            cap(list);
        }
        self.down = down.iter().map(|b| b.nodeid).collect();
        view
    }
}

impl Broker {
    fn is_down(&self, was_down: bool) -> bool {
        match self.state.as_str() {
            // INIT: never needed yet; librdkafka connects to a broker only
            // once it leads a partition the producer writes to.
            "UP" | "UPDATE" | "INIT" => false,
            "DOWN" => self.stateage < IDLE_DOWN_US,
            _ => was_down || self.stateage >= CONNECTING_TOO_LONG_US,
        }
    }

    fn is_silent(&self) -> bool {
        self.state == "UP" && self.waitresp_cnt > 0 && self.rxidle >= SILENT_TOO_LONG_US
    }
}

impl Partition {
    /// Records librdkafka holds for the partition: queued, being sent, or
    /// sent and not acknowledged.
    fn held(&self) -> i64 {
        self.msgq_cnt + self.xmit_msgq_cnt + self.msgs_inflight
    }
}

fn cap(list: &mut Vec<String>) {
    if list.len() > MAX_ENTRIES {
        let more = list.len() - MAX_ENTRIES;
        list.truncate(MAX_ENTRIES);
        list.push(format!("and {more} more"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn broker(id: i32, state: &str, stateage_s: i64, waitresp: i64, rxidle_s: i64) -> Value {
        json!({"name": format!("h:{id}/{id}"), "nodeid": id, "nodename": format!("h:{id}"), "state": state,
               "stateage": stateage_s * 1_000_000, "waitresp_cnt": waitresp, "rxidle": rxidle_s * 1_000_000,
               "txretries": 0, "outbuf_cnt": 0})
    }

    /// A partition holding `held` records, every earlier one acknowledged.
    fn partition(p: i32, leader: i32, held: i64, acked: u64) -> Value {
        sent(p, leader, held, acked + held as u64, acked, 5)
    }

    fn sent(p: i32, leader: i32, held: i64, msgs: u64, acked: u64, txmsgs: u64) -> Value {
        json!({"partition": p, "leader": leader, "msgq_cnt": held, "xmit_msgq_cnt": 0, "msgs_inflight": 0,
               "msgs": msgs, "txmsgs": txmsgs, "acked_msgid": acked})
    }

    /// Statistics at `ts_s` seconds; `idempotent` adds the `eos` object.
    fn statistics(ts_s: i64, idempotent: bool, brokers: Vec<Value>, partitions: Vec<Value>) -> Statistics {
        let brokers: serde_json::Map<_, _> = brokers.into_iter().map(|b| (b["name"].as_str().unwrap().to_string(), b)).collect();
        let partitions: serde_json::Map<_, _> = partitions.into_iter().map(|p| (p["partition"].to_string(), p)).collect();
        let mut json = json!({"name": "rdkafka#producer-1", "ts": ts_s * 1_000_000, "brokers": brokers,
                              "topics": {"t": {"topic": "t", "partitions": partitions}}});
        if idempotent {
            json["eos"] = json!({"idemp_state": "Assigned", "producer_id": 7});
        }
        serde_json::from_slice(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    #[test]
    fn a_healthy_cluster_shows_nothing() {
        let stats = statistics(
            0,
            true,
            vec![broker(1, "UP", 60, 2, 0), broker(2, "UP", 60, 0, 30), broker(3, "INIT", 60, 0, -1)],
            vec![partition(0, 1, 500, 10), partition(-1, -1, 0, 0)],
        );
        assert_eq!(ClusterWatch::default().view(&stats), ClusterView::default());
        assert!(stats.any_broker_up());
    }

    #[test]
    fn a_broker_refusing_connections_stays_down_until_seen_up() {
        let at = |state, age| statistics(0, true, vec![broker(1, "UP", 60, 0, 0), broker(2, state, age, 0, -1)], vec![]);
        let mut watch = ClusterWatch::default();
        assert_eq!(watch.view(&at("TRY_CONNECT", 0)).brokers_down, Vec::<String>::new());
        assert_eq!(watch.view(&at("TRY_CONNECT", 3)).brokers_down, vec!["h:2 (node 2)"]);
        assert_eq!(watch.view(&at("CONNECT", 0)).brokers_down, vec!["h:2 (node 2)"]);
        assert_eq!(watch.view(&at("DOWN", 0)).brokers_down, vec!["h:2 (node 2)"]);
        assert_eq!(watch.view(&at("UP", 0)).brokers_down, Vec::<String>::new());
        assert_eq!(watch.view(&at("CONNECT", 0)).brokers_down, Vec::<String>::new());
        // Left alone once it leads nothing the producer writes to.
        assert_eq!(watch.view(&at("DOWN", 14)).brokers_down, vec!["h:2 (node 2)"]);
        assert_eq!(watch.view(&at("DOWN", 16)).brokers_down, Vec::<String>::new());
    }

    #[test]
    fn partitions_name_why_their_records_wait() {
        let stats = statistics(
            0,
            true,
            vec![broker(1, "UP", 60, 3, 12), broker(2, "DOWN", 1, 0, -1), broker(3, "UP", 60, 1, 0)],
            vec![partition(0, 1, 10, 0), partition(1, 2, 20, 0), partition(2, -1, 30, 0), partition(3, 3, 40, 0), partition(4, 2, 0, 0)],
        );
        let view = ClusterWatch::default().view(&stats);
        assert_eq!(view.brokers_down, vec!["h:2 (node 2)"]);
        assert_eq!(view.brokers_not_answering, vec!["h:1 (node 1): 3 requests unanswered for 12 s"]);
        assert_eq!(
            view.partitions_waiting,
            vec![
                "t [0]: 10 records, leader h:1 (node 1) not answering",
                "t [1]: 20 records, leader h:2 (node 2) down",
                "t [2]: 30 records, no leader",
            ]
        );
    }

    /// A leader that answers at once and acknowledges nothing, as one
    /// refusing writes with NOT_ENOUGH_REPLICAS that librdkafka retries.
    #[test]
    fn a_leader_that_answers_and_acknowledges_nothing_is_named() {
        let at = |ts, idempotent, acked| statistics(ts, idempotent, vec![broker(1, "UP", 60, 1, 0)], vec![partition(0, 1, 99, acked)]);
        let mut watch = ClusterWatch::default();
        for (ts, acked) in [(0, 7), (3, 8), (6, 8), (7, 8)] {
            assert_eq!(watch.view(&at(ts, true, acked)).partitions_waiting, Vec::<String>::new(), "at {ts} s");
        }
        let waiting = watch.view(&at(11, true, 8)).partitions_waiting;
        assert_eq!(waiting.len(), 1);
        assert!(waiting[0].starts_with("t [0]: 99 records, none acknowledged for 8 s by leader h:1 (node 1), which answers"), "{waiting:?}");
        assert_eq!(watch.view(&at(12, true, 9)).partitions_waiting, Vec::<String>::new());
        // Without idempotence nothing counts acknowledgements: no guess.
        let mut plain = ClusterWatch::default();
        for ts in [0, 10, 20] {
            assert_eq!(plain.view(&at(ts, false, 0)).partitions_waiting, Vec::<String>::new());
        }
    }

    /// Records librdkafka retries sit in its broker's retry queue, which the
    /// partition's counts miss: what was given and not acknowledged counts,
    /// while librdkafka keeps sending. A gap left by a record that failed
    /// for good, with nothing sent since, is not a wait.
    #[test]
    fn records_being_retried_count_and_a_failed_gap_does_not() {
        let at = |ts, txmsgs| statistics(ts, true, vec![broker(1, "UP", 60, 0, 0)], vec![sent(0, 1, 0, 100, 40, txmsgs)]);
        let mut watch = ClusterWatch::default();
        for ts in [0, 2, 4] {
            assert_eq!(watch.view(&at(ts, 10 + ts as u64)).partitions_waiting, Vec::<String>::new());
        }
        let waiting = watch.view(&at(6, 16)).partitions_waiting;
        assert_eq!(waiting.len(), 1);
        assert!(waiting[0].starts_with("t [0]: 60 records, none acknowledged for 6 s"), "{waiting:?}");
        // Nothing sent for 5 s: the 60 failed, nothing waits.
        assert_eq!(watch.view(&at(12, 16)).partitions_waiting, Vec::<String>::new());
    }

    #[test]
    fn long_lists_are_cut() {
        let stats = statistics(0, true, vec![], (0..25).map(|p| partition(p, -1, 1, 0)).collect());
        let waiting = ClusterWatch::default().view(&stats).partitions_waiting;
        assert_eq!(waiting.len(), MAX_ENTRIES + 1);
        assert_eq!(waiting.last().unwrap(), "and 15 more");
    }
}
