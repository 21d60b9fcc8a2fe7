//! The durability decision: what `synchronous_standby_names` the primary
//! runs with for `[replication] durability`, from the replicas configured
//! and streaming. Pure; the agent's durability task applies it, and every
//! promotion applies [`at_promotion`] before the new primary's first write.

use serde::Serialize;

use crate::domain::modes::Durability as Mode;

/// What the primary should run with, and how healthy that is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Plan {
    pub mode: Mode,
    /// The value for `synchronous_standby_names`.
    pub names: String,
    pub state: PlanState,
    /// The sentence for logs and status.
    pub message: String,
}

/// How the plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PlanState {
    /// Commits wait for what the mode asks (or for nothing, in async).
    Ok,
    /// `sync` fell back to asynchronous: too few standbys stream.
    Degraded,
    /// `sync-strict` with too few standbys: commits wait until one returns.
    Blocked,
}

fn quote(n: &str) -> String {
    format!("\"{}\"", n.replace('"', "\"\""))
}

fn any(n: usize, names: &[String]) -> String {
    format!("ANY {n} ({})", names.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

/// Decide `synchronous_standby_names` from the replicas configured and streaming.
pub(crate) fn plan(mode: Mode, sync_count: usize, configured: &[String], streaming: &[String]) -> Plan {
    let n = sync_count.max(1);
    match mode {
        Mode::Async => Plan { mode, names: String::new(), state: PlanState::Ok, message: "asynchronous replication".into() },
        Mode::Sync if streaming.len() >= n => Plan {
            mode,
            names: any(n, streaming),
            state: PlanState::Ok,
            message: format!("synchronous: each commit waits for {n} of {} streaming standbys", streaming.len()),
        },
        Mode::Sync => Plan {
            mode,
            names: String::new(),
            state: PlanState::Degraded,
            message: format!(
                "DEGRADED to asynchronous: {} of {n} synchronous standbys streaming; commits do not wait and a failover now may lose them",
                streaming.len()
            ),
        },
        Mode::SyncStrict => {
            let state = if streaming.len() >= n { PlanState::Ok } else { PlanState::Blocked };
            let message = if state == PlanState::Ok {
                format!("synchronous (strict): each commit waits for {n} of {}", configured.len())
            } else {
                format!("commits blocked: {} of {n} synchronous standbys streaming (sync-strict never degrades); start a standby to release them", streaming.len())
            };
            Plan { mode, names: if configured.is_empty() { String::new() } else { any(n, configured) }, state, message }
        }
    }
}

/// The list a standby gets just before its promotion, whatever it
/// inherited (pg_rewind and base backups copy postgresql.auto.conf): in the
/// sync modes, every other node, so no commit is acknowledged before a
/// standby holds it; `sync` then loosens to the streaming ones the way it
/// always does, recording that first.
pub(crate) fn at_promotion(mode: Mode, sync_count: usize, others: &[String]) -> String {
    plan(mode, sync_count, others, others).names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sync_lists_streaming_standbys_and_degrades_loudly() {
        let p = plan(Mode::Sync, 1, &v(&["pg-2", "pg-3"]), &v(&["pg-2", "pg-3"]));
        assert_eq!(p.names, "ANY 1 (\"pg-2\", \"pg-3\")");
        assert_eq!(p.state, PlanState::Ok);
        let p = plan(Mode::Sync, 1, &v(&["pg-2", "pg-3"]), &v(&["pg-3"]));
        assert_eq!(p.names, "ANY 1 (\"pg-3\")");
        let p = plan(Mode::Sync, 1, &v(&["pg-2", "pg-3"]), &[]);
        assert_eq!((p.names.as_str(), p.state), ("", PlanState::Degraded));
        assert!(p.message.starts_with("DEGRADED to asynchronous: 0 of 1"), "{}", p.message);
    }

    #[test]
    fn strict_never_degrades_and_says_why_commits_wait() {
        let p = plan(Mode::SyncStrict, 1, &v(&["pg-2"]), &[]);
        assert_eq!(p.names, "ANY 1 (\"pg-2\")");
        assert_eq!(p.state, PlanState::Blocked);
        assert!(p.message.starts_with("commits blocked: 0 of 1 synchronous standbys streaming"), "{}", p.message);
    }

    #[test]
    fn a_promotion_protects_the_first_commit_in_both_sync_modes() {
        let others = v(&["pg-1", "pg-3"]);
        assert_eq!(at_promotion(Mode::SyncStrict, 1, &others), "ANY 1 (\"pg-1\", \"pg-3\")");
        assert_eq!(at_promotion(Mode::Sync, 2, &others), "ANY 2 (\"pg-1\", \"pg-3\")");
        assert_eq!(at_promotion(Mode::Async, 1, &others), "");
    }

    #[test]
    fn async_clears_the_list() {
        assert_eq!(plan(Mode::Async, 1, &v(&["pg-2"]), &v(&["pg-2"])).names, "");
    }
}
