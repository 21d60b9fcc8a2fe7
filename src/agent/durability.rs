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
//! The decision is the pure [`crate::domain::durability::plan`]; the task applies it.

use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::agent::{next_snapshot, Stop};
use crate::config::Node;
use crate::domain::durability::{plan, Plan, PlanState};
use crate::domain::modes::Durability as Mode;
use crate::observe::snapshot::Latest;
use crate::output::Output;
use crate::store::ctx::Ctx;

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
    let mut session = Session::default();
    let mut trouble = Trouble::default();
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
        let current = match session.current(&ctx, &primary).await {
            Ok(v) => v,
            Err(e) => {
                trouble.say(&out, e);
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
            match session.set(&p.names).await {
                Ok(()) => {
                    out.info(format!("durability: synchronous_standby_names = '{}' on {}", p.names, primary.name))
                }
                Err(e) => {
                    trouble.say(&out, e);
                    continue;
                }
            }
        }
        trouble.clear(&out);
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

/// How long one statement on the primary may take before the task gives
/// up on the session and says so: a hung session must not stop the task.
const STATEMENT_LIMIT: Duration = Duration::from_secs(10);

/// One kept session on the primary, not a new backend every tick (a fork
/// and an authentication each second is most of what an idle cluster would
/// otherwise spend on being watched).
#[derive(Default)]
struct Session {
    kept: Option<(String, tokio_postgres::Client)>,
}

impl Session {
    /// The primary's `synchronous_standby_names`, as its sessions run it.
    async fn current(&mut self, ctx: &Ctx, primary: &Node) -> Result<String, String> {
        if self.kept.as_ref().is_none_or(|(name, c)| *name != primary.name || c.is_closed()) {
            self.kept = None;
            let c = bounded(ctx.connect(primary), &format!("connecting to the primary {}", primary.name)).await?;
            self.kept = Some((primary.name.clone(), c));
        }
        let r = match &self.kept {
            Some((name, c)) => {
                bounded(c.query_one("SHOW synchronous_standby_names", &[]), &format!("reading the list on {name}"))
                    .await
                    .map(|row| row.get(0))
            }
            None => Err("no session".into()),
        };
        self.forget_on_error(r)
    }

    /// Set the list with ALTER SYSTEM, and reload.
    async fn set(&mut self, names: &str) -> Result<(), String> {
        let mut r = Err("no session".to_string());
        if let Some((name, c)) = &self.kept {
            for q in crate::pg::sql::set_standby_names(names) {
                r = bounded(c.batch_execute(&q), &format!("`{q}` on {name}")).await;
                if r.is_err() {
                    break;
                }
            }
        }
        self.forget_on_error(r)
    }

    /// On any failure the session goes; the next cycle opens a new one.
    fn forget_on_error<T>(&mut self, r: Result<T, String>) -> Result<T, String> {
        if r.is_err() {
            self.kept = None;
        }
        r
    }
}

/// `f`, or an error naming `what` if it fails or takes over [`STATEMENT_LIMIT`].
async fn bounded<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
    what: &str,
) -> Result<T, String> {
    match tokio::time::timeout(STATEMENT_LIMIT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer in {}s", STATEMENT_LIMIT.as_secs())),
    }
}

/// Why the task cannot keep the list in line, said once it fails the same
/// way twice in a row (a primary that was just killed fails once, and a
/// failover follows) and when it ends: a list that silently stayed wrong was
/// once seen for a minute with nothing in the log to say why.
#[derive(Default)]
struct Trouble {
    why: Option<String>,
    said: bool,
}

impl Trouble {
    fn say(&mut self, out: &Output, why: String) {
        if self.why.as_ref() != Some(&why) {
            *self = Trouble { why: Some(why), said: false };
        } else if !self.said {
            out.info(format!("durability: cannot keep synchronous_standby_names in line, retrying: {why}"));
            self.said = true;
        }
    }

    fn clear(&mut self, out: &Output) {
        if std::mem::take(self).said {
            out.info("durability: synchronous_standby_names is in line again");
        }
    }
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
