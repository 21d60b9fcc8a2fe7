//! The monitor's snapshot: a status, its health verdict and counters, as
//! the monitor task (`agent::monitor`) publishes it for the HTTP API and
//! the metrics.

use std::sync::Arc;

use tokio::sync::watch;

use crate::observe::health::{Report, Thresholds};
use crate::observe::status::ClusterStatus;
use crate::store::state::{EventRecord, State};

/// One published snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub status: ClusterStatus,
    pub health: Report,
    /// Unix time it was taken.
    pub taken_unix: f64,
    /// Supervisor restarts per local node.
    pub restarts: Vec<(String, u32)>,
    /// Moves of the primary by kind (`switchover`, `failover`), from the history.
    pub moves: Vec<(String, u64)>,
    /// Moves of the primary by the node they made primary, and kind.
    pub moves_to: Vec<(String, String, u64)>,
    /// The thresholds the health verdict used (`[monitor]`).
    pub thresholds: Thresholds,
    /// The events in the cluster's record, oldest first.
    pub recorded: Vec<EventRecord>,
}

/// The latest snapshot, if one has been taken.
pub(crate) type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// Moves in the history, by kind.
pub(crate) fn count_moves(st: &State) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for m in &st.history {
        match out.iter_mut().find(|(k, _)| *k == m.kind.to_string()) {
            Some((_, n)) => *n += 1,
            None => out.push((m.kind.to_string(), 1)),
        }
    }
    out
}

/// Moves in the history, by the node they made primary and kind.
pub(crate) fn count_moves_to(st: &State) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = Vec::new();
    for m in &st.history {
        let kind = m.kind.to_string();
        match out.iter_mut().find(|(n, k, _)| *n == m.to && *k == kind) {
            Some((_, _, n)) => *n += 1,
            None => out.push((m.to.clone(), kind, 1)),
        }
    }
    out
}

/// A fixed example snapshot (1 primary, 2 replicas: one caught up, one
/// lagging; two slots), for rendering tests.
#[cfg(test)]
pub(crate) fn example() -> Snapshot {
    use crate::observe::health;
    use crate::observe::status::{Conflicts, Lag, NodeStatus, Replication, SlotStatus};
    let lsn = |s: &str| s.parse().ok();
    let node = |name: &str, port: u16, role: crate::config::Role| NodeStatus {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        role: Some(role),
        state: crate::observe::status::NodeState::Running,
        pid: Some(1000 + port as i32),
        timeline: Some(1),
        current_lsn: None,
        received_lsn: None,
        replayed_lsn: None,
        last_replay_timestamp: None,
        wal_receiver: None,
        conflicts: Some(Conflicts::default()),
        replication: None,
        pending_restart: Some(vec![]),
        upstream: (role == crate::config::Role::Replica).then(|| "pg-1".into()),
        standby_slots: None,
        slow_figures_age_seconds: None,
        error: None,
    };
    let mut p = node("pg-1", 15432, crate::config::Role::Primary);
    p.current_lsn = lsn("0/5000060");
    let mut r1 = node("pg-2", 15433, crate::config::Role::Replica);
    r1.received_lsn = lsn("0/5000060");
    r1.replayed_lsn = lsn("0/5000060");
    r1.wal_receiver = Some("streaming".into());
    r1.last_replay_timestamp = Some("2026-11-22T08:00:00.000Z".into());
    r1.replication = Some(Replication {
        state: Some("streaming".into()),
        sync_state: Some("async".into()),
        sent_lsn: lsn("0/5000060"),
        write_lsn: lsn("0/5000060"),
        flush_lsn: lsn("0/5000060"),
        replay_lsn: lsn("0/5000060"),
        send_lag_bytes: Some(0),
        lag_bytes: Lag { write: Some(0), flush: Some(0), replay: Some(0) },
        lag_seconds: Lag { write: Some(0.0), flush: Some(0.0), replay: Some(0.0) },
        ssl: Some(false),
    });
    let mut r2 = node("pg-3", 15434, crate::config::Role::Replica);
    r2.received_lsn = lsn("0/5000060");
    r2.replayed_lsn = lsn("0/4000000");
    r2.wal_receiver = Some("streaming".into());
    r2.conflicts = Some(Conflicts { snapshot: 3, lock: 1, total: 4, ..Conflicts::default() });
    r2.replication = Some(Replication {
        state: Some("streaming".into()),
        sync_state: Some("async".into()),
        sent_lsn: lsn("0/5000060"),
        write_lsn: lsn("0/5000060"),
        flush_lsn: lsn("0/5000060"),
        replay_lsn: lsn("0/4000000"),
        send_lag_bytes: Some(0),
        lag_bytes: Lag { write: Some(0), flush: Some(0), replay: Some(16777312) },
        lag_seconds: Lag { write: Some(0.0), flush: Some(0.0), replay: Some(75.25) },
        ssl: Some(false),
    });
    let status = ClusterStatus {
        cluster: "demo".into(),
        timestamp: "2026-11-22T08:00:00.000Z".into(),
        primary: "pg-1".into(),
        ha: Some("primary pg-1 is writable and holds the leader lease".into()),
        last_move: None,
        paused: None,
        needs_reclone: vec![],
        fenced: vec![],
        state_error: None,
        settling: None,
        durability: Some(
            serde_json::json!({"mode": "async", "names": "", "state": "ok", "message": "asynchronous replication"}),
        ),
        archive: Some(crate::observe::status::ArchiveStatus {
            dir: "/srv/archive".into(),
            size_bytes: 50331648,
            archived_count: Some(3),
            failed_count: Some(0),
            ..Default::default()
        }),
        nodes: vec![p, r1, r2],
        slots: vec![
            SlotStatus {
                slot: "pg_2".into(),
                active: true,
                wal_status: Some("reserved".into()),
                retained_bytes: Some(0),
                safe_wal_size: None,
            },
            SlotStatus {
                slot: "pg_3".into(),
                active: true,
                wal_status: Some("reserved".into()),
                retained_bytes: Some(16777312),
                safe_wal_size: Some(1 << 30),
            },
        ],
        silent_agents: Vec::new(),
    };
    let t = Thresholds {
        warn_lag: std::time::Duration::from_secs(60),
        crit_lag: std::time::Duration::from_secs(300),
        warn_conflicts: 100,
        crit_slot_retained: crate::domain::units::ByteSize(1 << 30),
    };
    let health = health::evaluate(&status, &t);
    Snapshot {
        status,
        health,
        taken_unix: 1_795_334_400.0,
        restarts: vec![("pg-1".into(), 0), ("pg-2".into(), 2), ("pg-3".into(), 0)],
        moves: vec![("switchover".into(), 2), ("failover".into(), 1)],
        moves_to: vec![
            ("pg-1".into(), "switchover".into(), 1),
            ("pg-2".into(), "switchover".into(), 1),
            ("pg-1".into(), "failover".into(), 1),
        ],
        thresholds: t,
        recorded: vec![EventRecord {
            at: 1_795_334_000.0,
            kind: "switchover".into(),
            node: "pg-1".into(),
            message: "switchover from pg-2 to pg-1 done".into(),
        }],
    }
}
