//! The monitoring report: everything seed 002's Python monitor put in its
//! JSON, computed from a status snapshot and its health verdict, with lag
//! defined as in `status` (so an idle cluster is not "lagging"). Pure.

use serde::Serialize;

use crate::domain::lsn::Lsn;
use crate::observe::health::{Level, Report};
use crate::observe::status::{ClusterStatus, Conflicts};

/// One report line of `pgrepl monitor --json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MonitorReport {
    pub timestamp: String,
    pub cluster: String,
    /// `ok`, `warning` or `critical`.
    pub status: &'static str,
    pub problems: Vec<String>,
    pub primary: Option<PrimaryReport>,
    pub standbys: Vec<StandbyReport>,
    pub summary: SummaryReport,
}

/// The writable primary and what it sees.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PrimaryReport {
    pub node: String,
    pub current_wal_lsn: Option<Lsn>,
    pub replicas: Vec<ReplicaRow>,
    pub replication_slots: Vec<SlotRow>,
    pub total_replicas: usize,
    pub active_replicas: usize,
}

/// One `pg_stat_replication` row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicaRow {
    pub application_name: String,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub send_lag_bytes: Option<u64>,
    pub write_lag_bytes: Option<u64>,
    pub flush_lag_bytes: Option<u64>,
    pub replay_lag_bytes: Option<u64>,
    pub write_lag_seconds: Option<f64>,
    pub flush_lag_seconds: Option<f64>,
    pub replay_lag_seconds: Option<f64>,
}

/// One physical slot.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SlotRow {
    pub slot_name: String,
    pub active: bool,
    pub wal_status: Option<String>,
    pub lag_bytes: Option<u64>,
    pub safe_wal_size: Option<i64>,
}

/// One configured standby, as it sees itself plus its verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StandbyReport {
    pub node: String,
    pub host: String,
    pub role: Option<crate::config::Role>,
    pub state: crate::observe::status::NodeState,
    /// `healthy`, `warning` or `critical`.
    pub status: Level,
    pub reasons: Vec<String>,
    pub last_received_lsn: Option<Lsn>,
    pub last_replayed_lsn: Option<Lsn>,
    pub receive_replay_lag_bytes: Option<u64>,
    pub last_replay_time: Option<String>,
    /// Replay lag in seconds, by the one definition (0 when caught up).
    pub time_lag_seconds: Option<f64>,
    pub conflicts: Option<Conflicts>,
    pub error: Option<String>,
}

/// Counts over the standbys.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SummaryReport {
    pub total_standbys: usize,
    pub healthy_standbys: usize,
    pub warning_standbys: usize,
    pub critical_standbys: usize,
    pub max_lag_seconds: Option<f64>,
    pub avg_lag_seconds: Option<f64>,
}

/// Build the report.
pub(crate) fn build(s: &ClusterStatus, h: &Report) -> MonitorReport {
    let primary_node = s.nodes.iter().find(|n| n.is_writable_primary());
    let primary = primary_node.map(|p| {
        let replicas: Vec<ReplicaRow> = s
            .nodes
            .iter()
            .filter_map(|n| n.replication.as_ref().map(|r| (n, r)))
            .map(|(n, r)| ReplicaRow {
                application_name: n.name.clone(),
                state: r.state.clone(),
                sync_state: r.sync_state.clone(),
                send_lag_bytes: r.send_lag_bytes,
                write_lag_bytes: r.lag_bytes.write,
                flush_lag_bytes: r.lag_bytes.flush,
                replay_lag_bytes: r.lag_bytes.replay,
                write_lag_seconds: r.lag_seconds.write,
                flush_lag_seconds: r.lag_seconds.flush,
                replay_lag_seconds: r.lag_seconds.replay,
            })
            .collect();
        PrimaryReport {
            node: p.name.clone(),
            current_wal_lsn: p.current_lsn,
            total_replicas: replicas.len(),
            active_replicas: replicas.iter().filter(|r| r.state.as_deref() == Some("streaming")).count(),
            replicas,
            replication_slots: s
                .slots
                .iter()
                .map(|sl| SlotRow {
                    slot_name: sl.slot.clone(),
                    active: sl.active,
                    wal_status: sl.wal_status.clone(),
                    lag_bytes: sl.retained_bytes,
                    safe_wal_size: sl.safe_wal_size,
                })
                .collect(),
        }
    });
    let standbys: Vec<StandbyReport> = s
        .nodes
        .iter()
        .filter(|n| Some(n.name.as_str()) != primary_node.map(|p| p.name.as_str()))
        .map(|n| {
            let v = h.node(&n.name);
            StandbyReport {
                node: n.name.clone(),
                host: n.host.clone(),
                role: n.role,
                state: n.state,
                status: v.map_or(Level::Healthy, |v| v.level),
                reasons: v.map(|v| v.reasons.clone()).unwrap_or_default(),
                last_received_lsn: n.received_lsn,
                last_replayed_lsn: n.replayed_lsn,
                receive_replay_lag_bytes: match (n.received_lsn, n.replayed_lsn) {
                    (Some(a), Some(b)) => Some(a.bytes_since(b).unwrap_or(0)),
                    _ => None,
                },
                last_replay_time: n.last_replay_timestamp.clone(),
                time_lag_seconds: n.replication.as_ref().and_then(|r| r.lag_seconds.replay),
                conflicts: n.conflicts,
                error: n.error.clone(),
            }
        })
        .collect();
    MonitorReport {
        timestamp: s.timestamp.clone(),
        cluster: s.cluster.clone(),
        status: match h.level {
            Level::Healthy => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        },
        problems: h
            .cluster
            .iter()
            .cloned()
            .chain(h.nodes.iter().flat_map(|n| n.reasons.iter().map(move |r| format!("{}: {r}", n.node))))
            .collect(),
        primary,
        summary: SummaryReport {
            total_standbys: standbys.len(),
            healthy_standbys: h.summary.healthy_standbys,
            warning_standbys: h.summary.warning_standbys,
            critical_standbys: h.summary.critical_standbys,
            max_lag_seconds: h.summary.max_lag_seconds,
            avg_lag_seconds: h.summary.avg_lag_seconds,
        },
        standbys,
    }
}

/// The one-line human summary (for `monitor` and `check`).
pub(crate) fn one_line(r: &MonitorReport) -> String {
    let primary = r.primary.as_ref().map_or("no writable primary".to_string(), |p| {
        format!("primary {} at {}", p.node, p.current_wal_lsn.map_or("-".into(), |l| l.to_string()))
    });
    let streaming = r.primary.as_ref().map_or(0, |p| p.active_replicas);
    let lag = r.summary.max_lag_seconds.map_or("unknown".into(), |l| format!("{l:.1}s"));
    format!("{primary}, {streaming}/{} standbys streaming, max replay lag {lag}", r.summary.total_standbys)
}
