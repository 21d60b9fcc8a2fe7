//! The dashboard's charts over time: a ring of compact samples taken from
//! the monitor's snapshots, at most one a second, for the last hour.
//!
//! Bounded by construction: [`CAPACITY`] samples whatever the monitor's
//! interval (a faster monitor is thinned to one sample a second), and each
//! sample holds numbers only; node and slot names are kept once, in the
//! ring. [`Ring::bytes`] counts what it holds, heap included.

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::observe::snapshot::Snapshot;
use crate::observe::status::NodeState;

/// An hour at one sample a second.
pub(crate) const CAPACITY: usize = 3600;
/// The finest spacing between two kept samples, seconds.
pub(crate) const RESOLUTION: f64 = 1.0;

/// One moment of the charts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Its place in the ring's sequence: the SSE event id.
    pub seq: u64,
    /// Unix time, seconds.
    pub t: f64,
    /// The primary's current WAL position, as bytes (for the WAL rate).
    pub wal: Option<u64>,
    /// Per node (in [`Ring::nodes`] order): replay lag.
    pub lag: Box<[NodeLag]>,
    /// Per slot (in [`Ring::slots`] order): WAL retained, bytes.
    pub retained: Box<[Option<u64>]>,
}

/// A replica's replay lag; `None` is unknown (or not a replica).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct NodeLag {
    pub seconds: Option<f32>,
    pub bytes: Option<u64>,
}

/// The last hour of samples.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    samples: VecDeque<Sample>,
    next_seq: u64,
    /// Names seen, in first-seen order: a sample's columns.
    nodes: Vec<String>,
    slots: Vec<String>,
}

/// The index of `name` in `names`, added at the end when new.
fn column(names: &mut Vec<String>, name: &str) -> usize {
    names.iter().position(|n| n == name).unwrap_or_else(|| {
        names.push(name.to_string());
        names.len() - 1
    })
}

impl Ring {
    /// Keep a sample of `snap`, unless the last one is under a second
    /// old. Returns the sample kept.
    pub(crate) fn push(&mut self, snap: &Snapshot) -> Option<&Sample> {
        let t = snap.taken_unix;
        // 2% slack: a 1 s monitor's ticks are 1 s apart give or take a
        // millisecond, and each of them must be kept.
        if self.samples.back().is_some_and(|last| t - last.t < RESOLUTION * 0.98) {
            return None;
        }
        let s = &snap.status;
        let mut lag = vec![NodeLag::default(); self.nodes.len()];
        for n in &s.nodes {
            let i = column(&mut self.nodes, &n.name);
            lag.resize(self.nodes.len(), NodeLag::default());
            if n.state != NodeState::Running {
                continue;
            }
            if let Some(r) = &n.replication {
                lag[i] = NodeLag { seconds: r.lag_seconds.replay.map(|v| v as f32), bytes: r.lag_bytes.replay };
            }
        }
        let mut retained = vec![None; self.slots.len()];
        for sl in &s.slots {
            let i = column(&mut self.slots, &sl.slot);
            retained.resize(self.slots.len(), None);
            retained[i] = sl.retained_bytes;
        }
        let wal = s.nodes.iter().find(|n| n.is_writable_primary()).and_then(|n| n.current_lsn).map(|l| l.0);
        if self.samples.len() == CAPACITY {
            self.samples.pop_front();
        }
        // The whole hour's slots at once: the ring's memory is then its
        // fixed part plus each sample's columns, and never doubles.
        if self.samples.capacity() < CAPACITY {
            self.samples.reserve_exact(CAPACITY - self.samples.len());
        }
        self.samples.push_back(Sample {
            seq: self.next_seq,
            t,
            wal,
            lag: lag.into_boxed_slice(),
            retained: retained.into_boxed_slice(),
        });
        self.next_seq += 1;
        self.samples.back()
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    /// Samples after `seq` (all of them for `None`), oldest first.
    pub(crate) fn since(&self, seq: Option<u64>) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| seq.is_none_or(|q| s.seq > q))
    }

    /// What the ring holds in memory, in bytes: the ring's own buffer
    /// (its capacity, not just its length) and each sample's columns.
    pub(crate) fn bytes(&self) -> usize {
        let names: usize = self.nodes.iter().chain(&self.slots).map(|n| size_of::<String>() + n.capacity()).sum();
        let columns: usize = self
            .samples
            .iter()
            .map(|s| s.lag.len() * size_of::<NodeLag>() + s.retained.len() * size_of::<Option<u64>>())
            .sum();
        size_of::<Self>() + self.samples.capacity() * size_of::<Sample>() + columns + names
    }

    /// One sample as the page reads it: lag and retention keyed by name.
    pub(crate) fn json(&self, s: &Sample) -> Value {
        let lag: serde_json::Map<String, Value> = s
            .lag
            .iter()
            .enumerate()
            .filter(|(_, l)| l.seconds.is_some() || l.bytes.is_some())
            .map(|(i, l)| (self.nodes[i].clone(), json!([l.seconds.map(|v| (v * 1000.0).round() / 1000.0), l.bytes])))
            .collect();
        let slots: serde_json::Map<String, Value> = s
            .retained
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((self.slots[i].clone(), json!(r.as_ref()?))))
            .collect();
        json!({"seq": s.seq, "t": (s.t * 1000.0).round() / 1000.0, "wal": s.wal, "lag": lag, "slots": slots})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::snapshot::example;

    fn at(t: f64) -> Snapshot {
        let mut s = example();
        s.taken_unix = t;
        s
    }

    #[test]
    fn a_sample_holds_each_replicas_replay_lag_and_each_slots_retention() {
        let mut ring = Ring::default();
        let s = ring.push(&example()).unwrap().clone();
        let v = ring.json(&s);
        assert_eq!(v["lag"]["pg-3"], json!([75.25, 16777312]));
        assert_eq!(v["lag"]["pg-2"], json!([0.0, 0]));
        assert!(v["lag"].get("pg-1").is_none(), "the primary has no lag: {v}");
        assert_eq!(v["slots"]["pg_3"], json!(16777312));
        assert_eq!(v["wal"], json!(0x5000060));
    }

    #[test]
    fn a_monitor_faster_than_a_second_is_thinned_to_one_sample_a_second() {
        let mut ring = Ring::default();
        for i in 0..50 {
            ring.push(&at(1000.0 + f64::from(i) * 0.1));
        }
        assert_eq!(ring.len(), 5, "5 s at 100 ms keep 5 samples");
    }

    #[test]
    fn the_ring_keeps_an_hour_and_its_memory_stops_growing() {
        let mut ring = Ring::default();
        for i in 0..CAPACITY {
            ring.push(&at(i as f64));
        }
        let full = ring.bytes();
        for i in CAPACITY..3 * CAPACITY {
            ring.push(&at(i as f64));
        }
        assert_eq!(ring.len(), CAPACITY);
        assert_eq!(ring.bytes(), full, "a full ring replaces, it does not grow");
        assert_eq!(ring.since(None).next().unwrap().seq, 2 * CAPACITY as u64, "the oldest went first");
        assert_eq!(ring.since(Some(3 * CAPACITY as u64 - 3)).count(), 2);
    }

    #[test]
    fn a_stopped_replica_has_no_lag_in_its_sample() {
        let mut snap = example();
        snap.status.nodes[2].state = NodeState::Stopped;
        let mut ring = Ring::default();
        let s = ring.push(&snap).unwrap().clone();
        assert!(ring.json(&s)["lag"].get("pg-3").is_none());
    }
}
