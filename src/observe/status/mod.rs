//! The status model: one snapshot of every node, its replication as the
//! primary sees it, and the primary's slots. Gathering is in `gather`, the
//! table in `table`; health verdicts are `health`'s.
//!
//! Lag, one definition everywhere (table, JSON, metrics, health): bytes are
//! the primary's current WAL position minus the replica's write/flush/replay
//! position from `pg_stat_replication`; seconds are that view's `*_lag`,
//! except that a replica 0 bytes behind has 0 s of lag (the view shows stale
//! values, then NULL, once WAL stops). An unknown value is `null`, never 0.

pub(crate) mod gather;
pub(crate) mod published;
pub(crate) mod table;

use serde::Serialize;

use crate::config::Role;
use crate::domain::lsn::Lsn;

/// The whole cluster at one moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterStatus {
    pub cluster: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub timestamp: String,
    /// The node pgrepl considers primary now.
    pub primary: String,
    /// The supervisor's latest HA decision, as a sentence (null without a supervisor).
    pub ha: Option<String>,
    /// The last move of the primary (switchover or failover) and why.
    pub last_move: Option<String>,
    /// `pgrepl pause`: since when (and why); null unless paused.
    pub paused: Option<String>,
    /// Nodes marked needs-reclone: they stay stopped until `pgrepl reclone`.
    pub needs_reclone: Vec<String>,
    /// Former primaries fenced by a failover: kept from taking writes
    /// until they rejoin as standbys.
    pub fenced: Vec<String>,
    /// A move or restart pgrepl made within the last few seconds ("restart
    /// of pg-2"): what it disturbs is reported as settling, not CRITICAL.
    pub settling: Option<String>,
    /// Why the cluster's record (the state file) cannot be read; null when
    /// it can. While set, pgrepl takes no automatic action and starts no node.
    pub state_error: Option<String>,
    /// The supervisor's durability plan: mode, synchronous_standby_names,
    /// state (`ok`, `degraded`, `blocked`) and why; null without a supervisor.
    pub durability: Option<serde_json::Value>,
    /// WAL archive health; null without `[archive] dir`.
    pub archive: Option<ArchiveStatus>,
    pub nodes: Vec<NodeStatus>,
    /// Physical slots on the observed primary.
    pub slots: Vec<SlotStatus>,
    /// Across hosts: nodes whose agent publishes nothing to etcd (stopped,
    /// frozen or cut off from etcd): nothing restarts or fails them over.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silent_agents: Vec<String>,
}

/// The WAL archive: the primary's `pg_stat_archiver` and the directory's size.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct ArchiveStatus {
    pub dir: String,
    pub size_bytes: u64,
    pub archived_count: Option<i64>,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<String>,
    pub failed_count: Option<i64>,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
    /// The last attempt failed (a failure newer than the last success).
    pub failing: bool,
}

/// One node.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct NodeStatus {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// `primary` or `replica` as observed (`pg_is_in_recovery`), or null if unknown.
    pub role: Option<Role>,
    pub state: NodeState,
    pub pid: Option<i32>,
    pub timeline: Option<i32>,
    pub current_lsn: Option<Lsn>,
    pub received_lsn: Option<Lsn>,
    pub replayed_lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()` (RFC 3339), standbys only.
    pub last_replay_timestamp: Option<String>,
    /// The standby's own WAL receiver status (`streaming`, ...).
    pub wal_receiver: Option<String>,
    /// Recovery conflicts from `pg_stat_database_conflicts`, summed over databases.
    pub conflicts: Option<Conflicts>,
    /// As the primary sees this replica.
    pub replication: Option<Replication>,
    /// Settings changed in the files that apply only at a restart
    /// (`pg_settings.pending_restart`); null when the node was not asked.
    pub pending_restart: Option<Vec<String>>,
    /// The node a standby streams from (or is set to), by its conninfo's
    /// host and port; `host:port` if no configured node has them; null on
    /// a primary or when unknown.
    pub upstream: Option<String>,
    /// A standby's inactive physical slots: left from when it was primary,
    /// they only hold WAL back (pgrepl drops the ones it made); null on a
    /// primary or when unknown.
    pub standby_slots: Option<Vec<String>>,
    /// How old `conflicts` and `pending_restart` are, in seconds: the
    /// supervisor asks for them one snapshot in ten; null when not asked.
    pub slow_figures_age_seconds: Option<f64>,
    pub error: Option<String>,
}

/// Recovery conflicts by kind.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, Default, PartialEq, Eq)]
pub(crate) struct Conflicts {
    pub tablespace: i64,
    pub lock: i64,
    pub snapshot: i64,
    pub bufferpin: i64,
    pub deadlock: i64,
    pub total: i64,
}

/// A node's process as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NodeState {
    /// It answered SQL.
    Running,
    /// Local, with no postmaster or no data dir.
    Stopped,
    /// Not local, and it could not be reached.
    Unreachable,
    /// No answer within the probe deadline (frozen, or overloaded).
    Unresponsive,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Running => "running",
            NodeState::Stopped => "stopped",
            NodeState::Unreachable => "unreachable",
            NodeState::Unresponsive => "unresponsive",
        })
    }
}

/// One `pg_stat_replication` row, with lag computed.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct Replication {
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sent_lsn: Option<Lsn>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// WAL the primary has not sent yet: current − sent_lsn.
    pub send_lag_bytes: Option<u64>,
    pub lag_bytes: Lag<u64>,
    pub lag_seconds: Lag<f64>,
    /// The standby's connection is encrypted (`pg_stat_ssl`).
    pub ssl: Option<bool>,
}

/// Lag of each kind; `None` is unknown.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, Default, PartialEq)]
pub(crate) struct Lag<T> {
    pub write: Option<T>,
    pub flush: Option<T>,
    pub replay: Option<T>,
}

/// One physical replication slot on the primary.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct SlotStatus {
    pub slot: String,
    pub active: bool,
    /// `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+).
    pub wal_status: Option<String>,
    /// WAL the slot holds back: current LSN − restart_lsn.
    pub retained_bytes: Option<u64>,
    /// Bytes that can still be written before the slot is lost (13+, with max_slot_wal_keep_size).
    pub safe_wal_size: Option<i64>,
}

impl NodeStatus {
    /// True when this node is a running, writable primary.
    pub(crate) fn is_writable_primary(&self) -> bool {
        self.state == crate::observe::status::NodeState::Running && self.role == Some(crate::config::Role::Primary)
    }

    /// True when the node is a replica that streams: by the primary's view,
    /// or (primary unreachable) by its own WAL receiver.
    pub(crate) fn is_streaming_replica(&self) -> bool {
        self.state == crate::observe::status::NodeState::Running
            && self.role == Some(crate::config::Role::Replica)
            && match &self.replication {
                Some(r) => r.state.as_deref() == Some("streaming"),
                None => self.wal_receiver.as_deref() == Some("streaming"),
            }
    }
}

/// Lag of one kind: bytes from the primary's position; seconds from the
/// view, but 0 when the replica is fully caught up.
pub(crate) fn lag(current: Option<Lsn>, at: Option<Lsn>, view_secs: Option<f64>) -> (Option<u64>, Option<f64>) {
    let bytes = match (current, at) {
        (Some(c), Some(a)) => Some(c.bytes_since(a).unwrap_or(0)),
        _ => None,
    };
    // Caught up means no lag, whatever the view still shows: it keeps the
    // last measured value for a while after WAL stops, then turns NULL.
    let secs = if bytes == Some(0) { Some(0.0) } else { view_secs };
    (bytes, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_caught_up_replica_has_zero_lag_not_unknown() {
        let l: Lsn = "0/3000148".parse().unwrap();
        assert_eq!(lag(Some(l), Some(l), None), (Some(0), Some(0.0)));
    }

    #[test]
    fn caught_up_replica_ignores_the_views_stale_seconds() {
        let l: Lsn = "0/3000148".parse().unwrap();
        assert_eq!(lag(Some(l), Some(l), Some(0.101)), (Some(0), Some(0.0)));
    }

    #[test]
    fn behind_with_null_view_is_unknown_seconds() {
        let c: Lsn = "0/3000148".parse().unwrap();
        let r: Lsn = "0/3000000".parse().unwrap();
        assert_eq!(lag(Some(c), Some(r), None), (Some(0x148), None));
        assert_eq!(lag(Some(c), None, None), (None, None));
    }
}
