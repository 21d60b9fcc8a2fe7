//! The drill's figures, computed from what its client and watcher
//! recorded: a pure function of the records and the round's marks, so
//! every number in a report is unit-tested on hand-made timelines.
//! Times are seconds since the drill started (monotonic clock).

use std::collections::HashSet;

use serde::Serialize;

/// A write the drill's client made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Write {
    pub id: i64,
    /// When it was sent.
    pub sent: f64,
    /// When it was acknowledged and by which node, or why it failed.
    pub result: Result<(f64, String), String>,
}

/// One watcher sample: each node's answer (`None`: no answer in time).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub at: f64,
    pub nodes: Vec<(String, Option<Probe>)>,
}

/// What a node said: writable or not, and its WAL position (current on a
/// primary, replayed on a standby) in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Probe {
    pub writable: bool,
    pub lsn: u64,
}

/// What the drill noted while a round ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Marks {
    /// Writes were flowing; the round's writes count from here.
    pub start: f64,
    pub fault: f64,
    /// The fault's wall-clock time (Unix seconds), for other clocks to compare.
    pub fault_unix: f64,
    /// The round is over (recovered, or given up); the next starts after.
    pub end: f64,
    /// Every replica streamed from the primary again (None: not in time).
    pub streaming: Option<f64>,
    pub primary_before: String,
    pub primary_after: Option<String>,
    pub timeline_before: Option<i32>,
    pub timeline_after: Option<i32>,
    /// Why the round failed (a timeout, a fault that could not be made).
    pub error: Option<String>,
}

/// One round's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Round {
    pub round: usize,
    pub ok: bool,
    pub error: Option<String>,
    /// When the fault was made (Unix seconds, to the millisecond).
    pub fault_at_unix: f64,
    /// Fault to the first write acknowledged by the primary after it (the
    /// new one, or the same one back); null if none came.
    pub rto_seconds: Option<f64>,
    /// The longest time without an acknowledged write around the fault.
    pub write_gap_seconds: f64,
    /// Acknowledged in this round, absent afterwards.
    pub lost_acknowledged: usize,
    /// Failed or timed out for the client, present afterwards.
    pub in_doubt_committed: usize,
    pub writes_acknowledged: usize,
    pub writes_failed: usize,
    /// Watcher samples that saw two writable primaries at once.
    pub dual_primary_samples: usize,
    pub samples: usize,
    pub timeline_before: Option<i32>,
    pub timeline_after: Option<i32>,
    pub primary_before: String,
    pub primary_after: Option<String>,
    /// Fault to every replica streaming from the primary again.
    pub replicas_streaming_seconds: Option<f64>,
    /// The longest replica lag the watcher saw in the round, in bytes.
    pub max_replica_lag_bytes: Option<u64>,
    /// Writes per 100 ms, for the report's picture.
    pub timeline: Timeline,
}

/// A round's writes in 100 ms buckets, with times relative to the fault.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Timeline {
    /// Where the first bucket starts (negative: before the fault).
    pub from_seconds: f64,
    pub bucket_seconds: f64,
    /// Writes acknowledged in each bucket (by when they were sent).
    pub acknowledged: Vec<u32>,
    /// Writes that failed or timed out in each bucket.
    pub failed: Vec<u32>,
}

/// The width of a timeline bucket.
const BUCKET: f64 = 0.1;

fn timeline(m: &Marks, writes: &[&Write]) -> Timeline {
    let n = (((m.end - m.start) / BUCKET).ceil() as usize).max(1);
    let (mut acknowledged, mut failed) = (vec![0u32; n], vec![0u32; n]);
    for w in writes {
        // The epsilon keeps 1.2 / 0.1 in bucket 12, where a reader puts it.
        let i = (((w.sent - m.start) / BUCKET + 1e-9) as usize).min(n - 1);
        match w.result {
            Ok(_) => acknowledged[i] += 1,
            Err(_) => failed[i] += 1,
        }
    }
    Timeline { from_seconds: round3(m.start - m.fault), bucket_seconds: BUCKET, acknowledged, failed }
}

/// The figures of one round. `present`: the ids found on the primary
/// after the drill.
pub(crate) fn round(n: usize, m: &Marks, writes: &[Write], samples: &[Sample], present: &HashSet<i64>) -> Round {
    let in_round = |t: f64| t >= m.start && t < m.end;
    let mine: Vec<&Write> = writes.iter().filter(|w| in_round(w.sent)).collect();
    let acks: Vec<(f64, &str, i64)> =
        mine.iter().filter_map(|w| w.result.as_ref().ok().map(|(t, s)| (*t, s.as_str(), w.id))).collect();
    let failed: Vec<i64> = mine.iter().filter(|w| w.result.is_err()).map(|w| w.id).collect();
    let gap = longest_gap(&acks.iter().map(|a| a.0).collect::<Vec<_>>(), m.fault, m.end);
    let rto = rto(m, &acks);
    let window: Vec<&Sample> = samples.iter().filter(|s| in_round(s.at)).collect();
    Round {
        round: n,
        ok: m.error.is_none(),
        error: m.error.clone(),
        fault_at_unix: round3(m.fault_unix),
        rto_seconds: rto.map(round3),
        write_gap_seconds: round3(gap),
        lost_acknowledged: acks.iter().filter(|a| !present.contains(&a.2)).count(),
        in_doubt_committed: failed.iter().filter(|id| present.contains(id)).count(),
        writes_acknowledged: acks.len(),
        writes_failed: failed.len(),
        dual_primary_samples: window.iter().filter(|s| writable(s).len() > 1).count(),
        samples: window.len(),
        timeline_before: m.timeline_before,
        timeline_after: m.timeline_after,
        primary_before: m.primary_before.clone(),
        primary_after: m.primary_after.clone(),
        replicas_streaming_seconds: m.streaming.map(|t| round3(t - m.fault)),
        max_replica_lag_bytes: window.iter().filter(|s| s.at >= m.fault).filter_map(|s| max_lag(s)).max(),
        timeline: timeline(m, &mine),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nodes a sample saw writable.
fn writable(s: &Sample) -> Vec<&str> {
    s.nodes.iter().filter(|(_, p)| p.is_some_and(|p| p.writable)).map(|(n, _)| n.as_str()).collect()
}

/// With exactly one writable node: how far the furthest standby trails it.
fn max_lag(s: &Sample) -> Option<u64> {
    let primaries: Vec<u64> = s.nodes.iter().filter_map(|(_, p)| p.filter(|p| p.writable)).map(|p| p.lsn).collect();
    let [primary] = primaries[..] else { return None };
    s.nodes.iter().filter_map(|(_, p)| p.filter(|p| !p.writable)).map(|p| primary.saturating_sub(p.lsn)).max()
}

/// The longest stretch without an acknowledgement from the fault to the
/// end, counting from the last acknowledgement before the fault.
fn longest_gap(acked_at: &[f64], fault: f64, end: f64) -> f64 {
    let mut times: Vec<f64> = acked_at.to_vec();
    times.sort_by(f64::total_cmp);
    let mut last = times.iter().rev().find(|t| **t <= fault).copied().unwrap_or(fault);
    let mut longest = 0.0f64;
    for t in times.iter().filter(|t| **t > fault) {
        longest = longest.max(t - last);
        last = *t;
    }
    // Writes that never came back by the end are a gap too.
    longest.max(end - last)
}

/// Fault to the first acknowledgement by the primary that serves after
/// it: from another node, its first one; from the same node (restarted in
/// place), the one that ends the outage (the longest gap after the fault).
fn rto(m: &Marks, acks: &[(f64, &str, i64)]) -> Option<f64> {
    let after: Vec<&(f64, &str, i64)> = acks.iter().filter(|a| a.0 > m.fault).collect();
    let to = m.primary_after.as_deref()?;
    if to != m.primary_before {
        return after.iter().filter(|a| a.1 == to).map(|a| a.0 - m.fault).reduce(f64::min);
    }
    let mut last = acks.iter().filter(|a| a.0 <= m.fault).map(|a| a.0).reduce(f64::max).unwrap_or(m.fault);
    let (mut longest, mut back) = (0.0f64, None);
    for a in &after {
        if a.0 - last > longest {
            longest = a.0 - last;
            back = Some(a.0);
        }
        last = a.0;
    }
    back.map(|t| t - m.fault)
}

/// Median, min and max of some figures (None when there are none).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub(crate) fn spread(xs: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = xs.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
    Some(Spread { median: round3(median), min: v[0], max: v[v.len() - 1] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, at: f64, by: &str) -> Write {
        Write { id, sent: at - 0.002, result: Ok((at, by.into())) }
    }
    fn fail(id: i64, at: f64) -> Write {
        Write { id, sent: at, result: Err("timeout".into()) }
    }
    fn marks(before: &str, after: &str) -> Marks {
        Marks {
            start: 0.0,
            fault: 1.0,
            fault_unix: 1_795_334_401.0,
            end: 5.0,
            streaming: Some(3.5),
            primary_before: before.into(),
            primary_after: Some(after.into()),
            timeline_before: Some(1),
            timeline_after: Some(2),
            error: None,
        }
    }

    #[test]
    fn a_failover_round_counts_rto_gap_losses_and_in_doubt_commits() {
        let writes = vec![
            ack(1, 0.5, "pg-1"),
            ack(2, 0.9, "pg-1"),
            ack(3, 1.1, "pg-1"), // the old primary still answered after the fault
            fail(4, 1.2),        // timed out, but committed
            fail(5, 1.3),        // timed out, never committed
            ack(6, 3.1, "pg-2"),
            ack(7, 3.2, "pg-2"),
        ];
        // id 3 was acknowledged by the old primary and did not reach the new one.
        let present: HashSet<i64> = [1, 2, 4, 6, 7].into();
        let r = round(1, &marks("pg-1", "pg-2"), &writes, &[], &present);
        assert_eq!(r.rto_seconds, Some(2.1), "fault at 1.0, first ack by pg-2 at 3.1");
        assert_eq!(r.write_gap_seconds, 2.0, "1.1 -> 3.1");
        assert_eq!((r.lost_acknowledged, r.in_doubt_committed), (1, 1));
        assert_eq!((r.writes_acknowledged, r.writes_failed), (5, 2));
        assert_eq!(r.replicas_streaming_seconds, Some(2.5));
        let t = &r.timeline;
        assert_eq!((t.from_seconds, t.acknowledged.len()), (-1.0, 50), "0 to 5 s in 100 ms buckets");
        assert_eq!((t.acknowledged[10], t.failed[12], t.failed[13], t.acknowledged[30]), (1, 1, 1, 1));
        assert_eq!(t.acknowledged.iter().sum::<u32>() + t.failed.iter().sum::<u32>(), 7);
    }

    #[test]
    fn a_restart_in_place_recovers_when_the_outage_ends_on_the_same_node() {
        let writes = vec![ack(1, 0.9, "pg-1"), ack(2, 1.05, "pg-1"), ack(3, 2.4, "pg-1"), ack(4, 2.5, "pg-1")];
        let present: HashSet<i64> = [1, 2, 3, 4].into();
        let r = round(1, &marks("pg-1", "pg-1"), &writes, &[], &present);
        assert_eq!(r.rto_seconds, Some(1.4));
        assert_eq!(r.write_gap_seconds, 2.5, "no write after 2.5 until the end at 5.0 counts too");
        assert_eq!(r.lost_acknowledged, 0);
    }

    #[test]
    fn the_watcher_samples_count_dual_primaries_and_replica_lag() {
        let p = |writable, lsn| Some(Probe { writable, lsn });
        let samples = vec![
            Sample { at: 0.5, nodes: vec![("pg-1".into(), p(true, 100)), ("pg-2".into(), p(false, 40))] },
            Sample { at: 1.5, nodes: vec![("pg-1".into(), p(true, 300)), ("pg-2".into(), p(false, 100))] },
            Sample { at: 2.0, nodes: vec![("pg-1".into(), None), ("pg-2".into(), p(false, 300))] },
            Sample { at: 2.5, nodes: vec![("pg-1".into(), p(true, 300)), ("pg-2".into(), p(true, 310))] },
            Sample { at: 9.0, nodes: vec![("pg-1".into(), p(true, 1)), ("pg-2".into(), p(true, 1))] },
        ];
        let r = round(1, &marks("pg-1", "pg-2"), &[], &samples, &HashSet::new());
        assert_eq!((r.samples, r.dual_primary_samples), (4, 1), "the sample after the end is the next round's");
        assert_eq!(r.max_replica_lag_bytes, Some(200), "lag counts from the fault: 300 - 100");
        assert_eq!(r.rto_seconds, None, "no write came back");
        assert_eq!(r.write_gap_seconds, 4.0);
    }

    #[test]
    fn spreads_are_median_min_max() {
        assert_eq!(spread([3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(spread([4.0, 1.0]).map(|s| s.median), Some(2.5));
        assert_eq!(spread([]), None);
    }
}
