//! Health verdicts: a pure function from a status snapshot and thresholds
//! to a level per node and for the cluster, each with the reasons. Used by
//! `check`, `monitor`, `status`, the HTTP API and the metrics alike.
//!
//! Time lag only means something while WAL is pending: a replica 0 bytes
//! behind has 0 s of lag (see `status`), so an idle cluster is healthy.

use std::time::Duration;

use serde::Serialize;

use crate::config::Monitor;
use crate::domain::units::ByteSize;
use crate::observe::status::ClusterStatus;

/// How bad something is. Ordered: the worst wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Healthy,
    Warning,
    Critical,
}

impl Level {
    /// The Nagios word for it.
    pub(crate) fn nagios(self) -> &'static str {
        match self {
            Level::Healthy => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
        }
    }
    /// Numeric form for metrics: 0, 1, 2.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

/// Thresholds, from `[monitor]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    pub warn_lag: Duration,
    pub crit_lag: Duration,
    pub warn_conflicts: u64,
    pub crit_slot_retained: ByteSize,
}

impl From<&Monitor> for Thresholds {
    fn from(m: &Monitor) -> Self {
        Thresholds {
            warn_lag: m.warn_lag,
            crit_lag: m.crit_lag,
            warn_conflicts: m.warn_conflicts,
            crit_slot_retained: m.crit_slot_retained,
        }
    }
}

/// One node's verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeHealth {
    pub node: String,
    pub level: Level,
    pub reasons: Vec<String>,
}

/// Counts and lag figures over the standbys.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Summary {
    pub healthy_standbys: usize,
    pub warning_standbys: usize,
    pub critical_standbys: usize,
    /// Over standbys whose lag is known; null when none is.
    pub max_lag_seconds: Option<f64>,
    pub avg_lag_seconds: Option<f64>,
}

/// The whole verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub level: Level,
    /// Problems that belong to no single node (primaries, slots).
    pub cluster: Vec<String>,
    pub nodes: Vec<NodeHealth>,
    pub summary: Summary,
}

impl Report {
    /// The verdict of one node.
    pub(crate) fn node(&self, name: &str) -> Option<&NodeHealth> {
        self.nodes.iter().find(|n| n.node == name)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Judge a snapshot.
pub(crate) fn evaluate(s: &ClusterStatus, t: &Thresholds) -> Report {
    let mut level = Level::Healthy;
    let mut cluster = Vec::new();
    let writable: Vec<&str> = s.nodes.iter().filter(|n| n.is_writable_primary()).map(|n| n.name.as_str()).collect();
    match writable.len() {
        0 => cluster.push((Level::Critical, "no writable primary".to_string())),
        1 => {}
        _ => cluster.push((Level::Critical, format!("{} writable primaries: {}", writable.len(), writable.join(", ")))),
    }
    for slot in &s.slots {
        match slot.wal_status.as_deref() {
            Some("lost") => {
                let node = s
                    .nodes
                    .iter()
                    .find(|n| crate::config::slot_name(&n.name) == slot.slot)
                    .map_or("NODE", |n| n.name.as_str());
                cluster.push((
                    Level::Critical,
                    format!("slot {} is lost: standby {node} needs a re-clone (`pgrepl reclone {node}`)", slot.slot),
                ))
            }
            Some("unreserved") => cluster.push((
                Level::Warning,
                format!("slot {} is about to lose WAL its standby needs (unreserved)", slot.slot),
            )),
            _ => {}
        }
        if let Some(b) = slot.retained_bytes.filter(|b| *b >= t.crit_slot_retained.0) {
            cluster.push((
                Level::Critical,
                format!("slot {} retains {} of WAL (limit {})", slot.slot, human(b), t.crit_slot_retained),
            ));
        }
    }
    if let Some(d) = &s.durability {
        let msg = d["message"].as_str().unwrap_or("").to_string();
        match d["state"].as_str() {
            Some("degraded") => cluster.push((Level::Warning, msg)),
            Some("blocked") => cluster.push((Level::Critical, msg)),
            _ => {}
        }
    }
    if let Some(e) = &s.state_error {
        cluster.push((
            Level::Critical,
            format!("the cluster's record cannot be read ({e}); pgrepl takes no automatic action and starts no node until it is restored"),
        ));
    }
    if let Some(since) = &s.paused {
        cluster.push((
            Level::Warning,
            format!("automatic failover is paused {since}; run `pgrepl resume` when the maintenance is done"),
        ));
    }
    if let Some(a) = s.archive.as_ref().filter(|a| a.failing) {
        cluster.push((
            Level::Warning,
            format!(
                "WAL archiving is failing (last failure: {}); see the primary's log",
                a.last_failed_wal.as_deref().unwrap_or("?")
            ),
        ));
    }
    let primary = writable.first().copied();
    let mut nodes = Vec::new();
    let mut lags = Vec::new();
    let mut summary = Summary {
        healthy_standbys: 0,
        warning_standbys: 0,
        critical_standbys: 0,
        max_lag_seconds: None,
        avg_lag_seconds: None,
    };
    for n in &s.nodes {
        let mut reasons: Vec<(Level, String)> = Vec::new();
        let is_primary = Some(n.name.as_str()) == primary;
        if n.state != crate::observe::status::NodeState::Running {
            let why = n.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
            reasons.push((Level::Critical, format!("{}{why}", n.state)));
        } else if n.is_writable_primary() && !is_primary {
            reasons.push((Level::Critical, "a second writable primary".into()));
        } else if !is_primary && !n.is_streaming_replica() {
            let recv = n.wal_receiver.as_deref().unwrap_or("none");
            reasons.push((Level::Critical, format!("running but not streaming (WAL receiver: {recv})")));
        }
        if s.silent_agents.contains(&n.name) {
            reasons.push((
                Level::Warning,
                "its agent publishes nothing to etcd (stopped, frozen or cut off from etcd): nothing restarts it or fails it over".into(),
            ));
        }
        // Right after a move or restart pgrepl made, a standby that has not
        // reconnected yet is expected: a warning that says so, not a page.
        if let Some(why) = &s.settling {
            for r in reasons.iter_mut().filter(|r| r.0 == Level::Critical && !is_primary) {
                *r = (Level::Warning, format!("settling after {why}: {}", r.1));
            }
        }
        if let Some(up) = n
            .upstream
            .as_deref()
            .filter(|u| !is_primary && n.state == crate::observe::status::NodeState::Running && *u != s.primary)
        {
            reasons.push((
                Level::Warning,
                format!("follows {up}, not the primary {}; the supervisor repoints it", s.primary),
            ));
        }
        if !is_primary && n.state == crate::observe::status::NodeState::Running {
            if let Some(r) = &n.replication {
                match (r.lag_seconds.replay, r.lag_bytes.replay) {
                    (Some(l), _) if l >= secs(t.crit_lag) => reasons
                        .push((Level::Critical, format!("replay lag {l:.1}s (critical at {}s)", secs(t.crit_lag)))),
                    (Some(l), _) if l >= secs(t.warn_lag) => {
                        reasons.push((Level::Warning, format!("replay lag {l:.1}s (warning at {}s)", secs(t.warn_lag))))
                    }
                    (None, Some(b)) => {
                        reasons.push((Level::Warning, format!("replay lag unknown, {} behind", human(b))))
                    }
                    _ => {}
                }
                if let Some(l) = r.lag_seconds.replay {
                    lags.push(l);
                }
            }
            if let Some(c) = n.conflicts.filter(|c| c.total as u64 >= t.warn_conflicts && t.warn_conflicts > 0) {
                reasons.push((
                    Level::Warning,
                    format!("{} recovery conflicts (warning at {})", c.total, t.warn_conflicts),
                ));
            }
        }
        let node_level = reasons.iter().map(|r| r.0).max().unwrap_or(Level::Healthy);
        if !is_primary {
            match node_level {
                Level::Healthy => summary.healthy_standbys += 1,
                Level::Warning => summary.warning_standbys += 1,
                Level::Critical => summary.critical_standbys += 1,
            }
        }
        level = level.max(node_level);
        nodes.push(NodeHealth {
            node: n.name.clone(),
            level: node_level,
            reasons: reasons.into_iter().map(|r| r.1).collect(),
        });
    }
    level = cluster.iter().map(|c| c.0).fold(level, Level::max);
    summary.max_lag_seconds = lags.iter().copied().reduce(f64::max);
    summary.avg_lag_seconds = (!lags.is_empty()).then(|| lags.iter().sum::<f64>() / lags.len() as f64);
    Report { level, cluster: cluster.into_iter().map(|c| c.1).collect(), nodes, summary }
}

/// Bytes for people: 1.5MB.
pub(crate) fn human(b: u64) -> String {
    let units = [("GB", 1u64 << 30), ("MB", 1 << 20), ("kB", 1 << 10)];
    for (u, m) in units {
        if b >= m {
            return format!("{:.1}{u}", b as f64 / m as f64);
        }
    }
    format!("{b}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::{Conflicts, Lag, NodeStatus, Replication, SlotStatus};

    fn t() -> Thresholds {
        Thresholds {
            warn_lag: Duration::from_secs(60),
            crit_lag: Duration::from_secs(300),
            warn_conflicts: 100,
            crit_slot_retained: ByteSize(1 << 30),
        }
    }

    fn node(name: &str, role: &str) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 1,
            role: Some(if role == "primary" { crate::config::Role::Primary } else { crate::config::Role::Replica }),
            state: crate::observe::status::NodeState::Running,
            pid: Some(1),
            timeline: Some(1),
            current_lsn: None,
            received_lsn: None,
            replayed_lsn: None,
            last_replay_timestamp: None,
            wal_receiver: (role == "replica").then(|| "streaming".into()),
            conflicts: Some(Conflicts::default()),
            replication: None,
            pending_restart: None,
            upstream: None,
            standby_slots: None,
            slow_figures_age_seconds: None,
            error: None,
        }
    }

    fn streaming(name: &str, bytes: Option<u64>, secs: Option<f64>) -> NodeStatus {
        let mut n = node(name, "replica");
        n.replication = Some(Replication {
            state: Some("streaming".into()),
            sync_state: Some("async".into()),
            sent_lsn: None,
            write_lsn: None,
            flush_lsn: None,
            replay_lsn: None,
            send_lag_bytes: Some(0),
            lag_bytes: Lag { write: bytes, flush: bytes, replay: bytes },
            lag_seconds: Lag { write: secs, flush: secs, replay: secs },
            ssl: Some(false),
        });
        n
    }

    fn cluster(nodes: Vec<NodeStatus>) -> ClusterStatus {
        ClusterStatus {
            cluster: "c".into(),
            timestamp: String::new(),
            primary: "p".into(),
            ha: None,
            last_move: None,
            paused: None,
            needs_reclone: vec![],
            fenced: vec![],
            state_error: None,
            settling: None,
            durability: None,
            archive: None,
            nodes,
            slots: vec![],
            silent_agents: Vec::new(),
        }
    }

    #[test]
    fn idle_caught_up_cluster_is_healthy() {
        // The seed-002 trap: a quiet cluster's replicas are not lagging.
        let r = evaluate(&cluster(vec![node("p", "primary"), streaming("r1", Some(0), Some(0.0))]), &t());
        assert_eq!(r.level, Level::Healthy);
        assert_eq!(r.summary.max_lag_seconds, Some(0.0));
        assert_eq!(r.summary.healthy_standbys, 1);
    }

    #[test]
    fn lag_thresholds_warn_then_go_critical() {
        let r = evaluate(&cluster(vec![node("p", "primary"), streaming("r1", Some(10), Some(61.0))]), &t());
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.node("r1").unwrap().reasons, vec!["replay lag 61.0s (warning at 60s)"]);
        let r = evaluate(&cluster(vec![node("p", "primary"), streaming("r1", Some(10), Some(301.0))]), &t());
        assert_eq!(r.level, Level::Critical);
        assert_eq!(r.summary.critical_standbys, 1);
    }

    #[test]
    fn a_replica_following_anything_but_the_recorded_primary_warns() {
        let mut r1 = streaming("r1", Some(0), Some(0.0));
        r1.upstream = Some("r2".into());
        let mut r2 = streaming("r2", Some(0), Some(0.0));
        r2.upstream = Some("p".into());
        let r = evaluate(&cluster(vec![node("p", "primary"), r1, r2]), &t());
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.node("r1").unwrap().reasons, vec!["follows r2, not the primary p; the supervisor repoints it"]);
        assert!(r.node("r2").unwrap().reasons.is_empty());
    }

    #[test]
    fn a_replica_disturbed_by_pgrepl_itself_is_settling_not_critical() {
        let mut r1 = node("r1", "replica");
        r1.wal_receiver = Some("starting".into());
        let mut c = cluster(vec![node("p", "primary"), r1]);
        c.settling = Some("restart of r1".into());
        let r = evaluate(&c, &t());
        assert_eq!(r.level, Level::Warning);
        assert_eq!(
            r.node("r1").unwrap().reasons,
            vec!["settling after restart of r1: running but not streaming (WAL receiver: starting)"]
        );
        c.settling = None;
        assert_eq!(evaluate(&c, &t()).level, Level::Critical);
    }

    #[test]
    fn stopped_replica_is_critical() {
        let mut r1 = node("r1", "replica");
        r1.state = crate::observe::status::NodeState::Stopped;
        r1.role = None;
        let r = evaluate(&cluster(vec![node("p", "primary"), r1]), &t());
        assert_eq!(r.level, Level::Critical);
        assert_eq!(r.node("r1").unwrap().reasons, vec!["stopped"]);
    }

    #[test]
    fn no_primary_and_two_primaries_are_critical() {
        let r = evaluate(&cluster(vec![streaming("r1", Some(0), Some(0.0))]), &t());
        assert_eq!(r.cluster, vec!["no writable primary"]);
        let r = evaluate(&cluster(vec![node("p", "primary"), node("q", "primary")]), &t());
        assert_eq!(r.level, Level::Critical);
        assert_eq!(r.cluster, vec!["2 writable primaries: p, q"]);
    }

    #[test]
    fn conflicts_and_slots_are_judged() {
        let mut r1 = streaming("r1", Some(0), Some(0.0));
        r1.conflicts = Some(Conflicts { snapshot: 150, total: 150, ..Conflicts::default() });
        let mut c = cluster(vec![node("p", "primary"), r1]);
        assert_eq!(evaluate(&c, &t()).level, Level::Warning);
        c.slots.push(SlotStatus {
            slot: "r2".into(),
            active: false,
            wal_status: Some("lost".into()),
            retained_bytes: Some(2 << 30),
            safe_wal_size: None,
        });
        let r = evaluate(&c, &t());
        assert_eq!(r.level, Level::Critical);
        assert_eq!(
            r.cluster,
            vec![
                "slot r2 is lost: standby NODE needs a re-clone (`pgrepl reclone NODE`)",
                "slot r2 retains 2.0GB of WAL (limit 1GB)"
            ]
        );
    }

    #[test]
    fn unknown_lag_while_behind_is_a_warning_not_zero() {
        let r = evaluate(&cluster(vec![node("p", "primary"), streaming("r1", Some(4096), None)]), &t());
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.summary.max_lag_seconds, None);
    }
}
