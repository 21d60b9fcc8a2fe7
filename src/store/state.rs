//! Runtime state, apart from the config: which cluster this data root
//! holds (system identifier), how far bootstrap got, and which node is the
//! primary now. Written atomically (temp file, fsync, rename).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The state file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct State {
    /// `[cluster] name` when the state was created.
    pub cluster: String,
    /// System identifier of the cluster pgrepl created (from the primary's initdb).
    pub system_id: Option<u64>,
    /// The node that is primary now.
    pub primary: Option<String>,
    /// Roles, databases and schemas are in place.
    pub bootstrapped: bool,
    /// Schema files already applied, as `database:path`.
    #[serde(default)]
    pub schemas_applied: Vec<String>,
    /// Nodes whose data dir cannot follow the primary (rewind impossible or
    /// failed): they stay stopped until `pgrepl reclone`.
    #[serde(default)]
    pub needs_reclone: Vec<String>,
    /// The standbys in `synchronous_standby_names` while synchronous
    /// replication was in force (empty when async or degraded): the only
    /// safe failover targets in the sync modes.
    #[serde(default)]
    pub sync_set: Vec<String>,
    /// `[[role]]`s pgrepl created or manages (never dropped: a role that
    /// leaves the config gets a warning).
    #[serde(default)]
    pub roles_managed: Vec<String>,
    /// Former primaries fenced by a failover, waiting to rejoin as standbys.
    #[serde(default)]
    pub fenced: Vec<String>,
    /// The last move of the primary and why, for `status`.
    #[serde(default)]
    pub last_move: Option<String>,
    /// `pgrepl pause`: since when (and why); no automatic HA action while set.
    #[serde(default)]
    pub paused: Option<String>,
    /// Every switchover and failover, oldest first (`pgrepl history`).
    #[serde(default)]
    pub history: Vec<MoveRecord>,
    /// The latest events that changed the cluster's shape (moves, rejoins,
    /// reclones, pause and resume), oldest first, at most [`EVENTS_KEPT`]:
    /// whichever process made them, the dashboard shows them with their reason.
    #[serde(default)]
    pub events: Vec<EventRecord>,
}

/// Events kept in the record: enough for the dashboard's list, small
/// enough that the record (an etcd value across hosts) stays small.
pub(crate) const EVENTS_KEPT: usize = 50;

/// One event, as the record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventRecord {
    /// Unix time, seconds.
    pub at: f64,
    /// The hook's event name: `switchover`, `failover`, `rejoin`, ...
    pub kind: String,
    /// The node it concerns, `-` for the whole cluster.
    pub node: String,
    /// What happened and why, as a sentence.
    pub message: String,
}

impl State {
    /// Keep `e`, dropping the oldest beyond [`EVENTS_KEPT`].
    pub(crate) fn record_event(&mut self, e: EventRecord) {
        self.events.push(e);
        let extra = self.events.len().saturating_sub(EVENTS_KEPT);
        self.events.drain(..extra);
    }

    /// Load, or an empty state when the file does not exist.
    pub(super) fn load(path: &Path) -> Result<State> {
        match std::fs::read_to_string(path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| {
                Error::Other(format!("{} is corrupt ({e}); it records which cluster this data root holds, so pgrepl will not guess. Restore it or move the data root aside", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Read, change and save under an exclusive lock, so two writers (a
    /// move command, the supervisor's tasks) never undo each other's change.
    pub(super) fn update<T>(path: &Path, f: impl FnOnce(&mut State) -> T) -> Result<T> {
        let _lock = crate::store::lock::exclusive(&path.with_extension("lock"), true)?;
        // This write drops what an older record kept for the host: keep it.
        crate::store::bookkeeping::Bookkeeping::migrate(path)?;
        let mut st = State::load(path)?;
        let out = f(&mut st);
        st.save(path)?;
        Ok(out)
    }

    /// Save atomically.
    fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        crate::pg::fsutil::write_atomic(path, text.as_bytes(), 0o644)
    }
}

/// One move, as kept in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MoveRecord {
    /// RFC 3339, UTC.
    pub at: String,
    pub kind: MoveKind,
    pub from: String,
    pub to: String,
    /// The new primary's timeline; None if it could not be asked.
    pub timeline: Option<i32>,
    /// Where the new timeline branched off the old one.
    pub switch_lsn: Option<String>,
}

/// A move of the primary, as the history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MoveKind {
    Switchover,
    Failover,
}

impl std::fmt::Display for MoveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MoveKind::Switchover => "switchover",
            MoveKind::Failover => "failover",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_written_before_moves_were_typed_still_reads() {
        let text = r#"{"cluster":"c","system_id":null,"primary":"pg-2","bootstrapped":true,
            "history":[{"at":"2026-11-22T10:00:00.000Z","kind":"failover","from":"pg-1","to":"pg-2","timeline":2,"switch_lsn":"0/5000A0"}]}"#;
        let st: State = serde_json::from_str(text).unwrap();
        assert_eq!(st.history[0].kind, MoveKind::Failover);
        let again = serde_json::to_string(&st).unwrap();
        assert!(again.contains(r#""kind":"failover""#), "{again}");
        assert!(st.events.is_empty(), "a record from before events were kept has none");
    }

    #[test]
    fn the_record_keeps_the_latest_events_only() {
        let mut st = State::default();
        for i in 0..EVENTS_KEPT + 7 {
            st.record_event(EventRecord {
                at: i as f64,
                kind: "pause".into(),
                node: "-".into(),
                message: String::new(),
            });
        }
        assert_eq!(st.events.len(), EVENTS_KEPT);
        assert_eq!(st.events[0].at, 7.0, "the oldest went first");
        assert_eq!(st.events.last().unwrap().at, (EVENTS_KEPT + 6) as f64);
    }
}
