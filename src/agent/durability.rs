//! Durability: `[replication] durability = "async" | "sync" | "sync-strict"`.
//!
//! The supervisor keeps the primary's `synchronous_standby_names` in line
//! with the setting on every monitor snapshot (ALTER SYSTEM + reload, never
//! a restart):
//! - `async`: empty;
//! - `sync`: `ANY n (...)` over the replicas streaming right now; with fewer
//!   than `sync_count` streaming it degrades to async and says so loudly;
//! - `sync-strict`: `ANY n (...)` over every configured replica, always;
//!   commits wait, and status says why.
//!
//! The decision is the pure [`plan`]; the task applies it.

use std::sync::Arc;

use serde::Serialize;

pub(crate) use crate::agent::{next_snapshot, Stop};
use crate::domain::modes::Durability as Mode;
use crate::observe::snapshot::Latest;
use crate::output::Output;
use crate::store::ctx::Ctx;

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

/// Say that the synchronous set could not be recorded (every cycle until it is).
fn unrecorded(out: &Output, e: &crate::error::Error, last: &mut String) {
    out.info(format!(
        "durability: cannot record which standbys are synchronous ({e}); failover in the sync modes cannot tell which standby holds every commit until it is"
    ));
    last.clear();
}

/// The task that keeps `synchronous_standby_names` in line, until a stop
/// is requested.
pub(crate) async fn run(ctx: Arc<Ctx>, mut latest: Latest, out: Output, mut stop: Stop) {
    let mut last = String::new();
    let mut kept: Option<(String, tokio_postgres::Client)> = None;
    while next_snapshot(&mut latest, &mut stop).await {
        let Some(snap) = latest.borrow_and_update().clone() else { continue };
        // No record, no change: the HA task reports an unreadable one.
        let Ok(primary) = crate::store::view::ClusterView::read(&ctx).map(|v| v.primary) else { continue };
        // Across hosts, the agent that runs the primary keeps its settings.
        if ctx.cfg.etcd.is_some() && !ctx.is_here(&primary) {
            continue;
        }
        if !snap.status.nodes.iter().any(|n| n.name == primary.name && n.is_writable_primary()) {
            continue;
        }
        let configured: Vec<String> =
            ctx.cfg.nodes.iter().filter(|n| n.name != primary.name).map(|n| n.name.clone()).collect();
        let streaming: Vec<String> = snap
            .status
            .nodes
            .iter()
            .filter(|n| n.name != primary.name && n.is_streaming_replica())
            .map(|n| n.name.clone())
            .collect();
        let p = plan(ctx.cfg.replication.durability, ctx.cfg.replication.sync_count, &configured, &streaming);
        let Some(c) = connection(&ctx, &primary, &mut kept).await else { continue };
        let current: String = match c.query_one("SHOW synchronous_standby_names", &[]).await {
            Ok(r) => r.get(0),
            Err(_) => {
                kept = None;
                continue;
            }
        };
        // Who may be promoted without losing acknowledged commits.
        let set: Vec<String> = match (p.mode, p.state) {
            (Mode::Sync, PlanState::Ok) => streaming.clone(),
            (Mode::SyncStrict, _) => configured.clone(),
            _ => Vec::new(),
        };
        let mut recorded = match ctx.store().load() {
            Ok(st) => st.sync_set,
            Err(e) => {
                unrecorded(&out, &e, &mut last);
                continue;
            }
        };
        if current != p.names {
            // Across hosts, only a leader whose lease is known to hold (a
            // fresh deadline) changes what protects commits.
            if ctx.cfg.etcd.is_some() && !ctx.holds_lease(&primary.name) {
                continue;
            }
            if let Err(e) = record_loosening(&ctx, &primary.name, &set, &mut recorded) {
                unrecorded(&out, &e, &mut last);
                continue;
            }
            set_standby_names(c, &p.names, &primary.name, &out).await;
        }
        // Failover trusts this record: a failure to write it is said
        // every cycle until it succeeds, never dropped.
        if recorded != set {
            if let Err(e) = ctx.store().update_as_leader(&primary.name, |st| st.sync_set = set.clone()) {
                unrecorded(&out, &e, &mut last);
                continue;
            }
        }
        if p.message != last {
            publish(&ctx, &p, &out, &mut last);
        }
    }
}

/// One kept connection to the primary, not a new backend every tick (a
/// fork and an authentication each second is most of what an idle cluster
/// would otherwise spend on being watched).
async fn connection<'a>(
    ctx: &Ctx,
    primary: &crate::config::Node,
    kept: &'a mut Option<(String, tokio_postgres::Client)>,
) -> Option<&'a tokio_postgres::Client> {
    if kept.as_ref().is_none_or(|(name, c)| *name != primary.name || c.is_closed()) {
        *kept = Some((primary.name.clone(), ctx.connect(primary).await.ok()?));
    }
    kept.as_ref().map(|(_, c)| c)
}

/// Loosening (a standby leaves the set, or `sync` degrades) is recorded
/// first, where failover reads it: a primary that cannot reach the store
/// then cannot loosen either, and its commits wait instead of being
/// acknowledged without a standby that a failover would then promote.
fn record_loosening(ctx: &Ctx, primary: &str, set: &[String], recorded: &mut Vec<String>) -> crate::error::Result<()> {
    let loosens = !recorded.iter().all(|n| set.contains(n));
    if loosens && *recorded != set {
        ctx.store().update_as_leader(primary, |st| st.sync_set = set.to_vec())?;
        *recorded = set.to_vec();
    }
    Ok(())
}

/// `synchronous_standby_names` on the primary, through its kept session.
async fn set_standby_names(c: &tokio_postgres::Client, names: &str, primary: &str, out: &Output) {
    let sql = format!("ALTER SYSTEM SET synchronous_standby_names = {}", crate::pg::sql::literal(names));
    if c.batch_execute(&sql).await.is_ok() && c.batch_execute("SELECT pg_reload_conf()").await.is_ok() {
        out.info(format!("durability: synchronous_standby_names = '{names}' on {primary}"));
    }
}

/// Say the plan's message and write it where `status` reads it.
fn publish(ctx: &Ctx, p: &Plan, out: &Output, last: &mut String) {
    out.info(format!("durability: {}", p.message));
    let text = serde_json::to_string(p).map_err(|e| e.to_string());
    match text.and_then(|t| {
        crate::pg::fsutil::write_atomic(&ctx.layout.durability_file(), t.as_bytes(), 0o644).map_err(|e| e.to_string())
    }) {
        Ok(()) => *last = p.message.clone(),
        Err(e) => out.info(format!("durability: cannot publish the plan for `status`: {e}")),
    }
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
    fn async_clears_the_list() {
        assert_eq!(plan(Mode::Async, 1, &v(&["pg-2"]), &v(&["pg-2"])).names, "");
    }
}
