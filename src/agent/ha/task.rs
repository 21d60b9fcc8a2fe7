//! The HA task inside the supervisor: on every monitor snapshot it renews
//! the leader lease for a writable primary, gathers the [`Facts`], decides,
//! logs the decision's sentence when it changes (and writes it where
//! `status` shows it), and carries the action out under the move lock.
//!
//! The move lock is taken before the state is read, so a `pause` (or any
//! move) that returns before this cycle reads the state is always seen. A
//! state file that cannot be read stops every automatic action (and says
//! so) instead of being read as "not paused, nothing fenced".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{decide, Action, Facts};
use crate::agent::supervise::Supervisor;
use crate::agent::{next_snapshot, Stop};
use crate::domain::election::Candidate;
use crate::domain::sentence::gist;
use crate::observe::snapshot::{Latest, Snapshot};
use crate::ops::control::{move_lock, Control};
use crate::output::Output;
use crate::store::ctx::Ctx;
use crate::store::dcs::Dcs;
use crate::store::view::ClusterView;

/// The wait after `failures` failed rejoins in a row.
pub(super) fn rejoin_backoff(interval: Duration, failures: u32) -> Duration {
    (interval * 2u32.saturating_pow(failures.min(16))).min(Duration::from_secs(300))
}

/// The least time between two clones of a standby with no data dir (a clone
/// that fails, on a full disk say, is not retried in a loop).
const CLONE_RETRY: Duration = Duration::from_secs(30);

/// What the task remembers between cycles.
struct Memory {
    /// The recorded primary and when it was last seen writable (or became
    /// the recorded primary, or the task started): how long it has been
    /// down is measured from there, not from the first snapshot that
    /// noticed.
    last_writable: (String, Instant),
    last_reason: String,
    next_rejoin: Instant,
    /// Failed rejoins back off (rejoin_interval doubling, at most 5 min): a
    /// cause that needs a person (missing pg_rewind, a broken dir) should not
    /// fill the log every few seconds.
    rejoin_failures: u32,
    recloned_at: HashMap<String, Instant>,
    /// When a standby with no data dir was last cloned (or tried).
    clone_tried: HashMap<String, Instant>,
    /// A snapshot taken before the last action finished still shows what
    /// that action changed (a lost slot, the old primary): never act on it.
    acted_at: f64,
}

/// What the task works with.
struct Env {
    ctx: Arc<Ctx>,
    sup: Supervisor,
    dcs: Arc<dyn Dcs>,
    out: Output,
}

/// The HA task, until a stop is requested: an action under way completes
/// first (a stop is only seen between cycles).
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    sup: Supervisor,
    mut latest: Latest,
    dcs: Arc<dyn Dcs>,
    out: Output,
    mut stop: Stop,
) {
    let env = Env { ctx: ctx.clone(), sup: sup.clone(), dcs: dcs.clone(), out: out.clone() };
    let mut mem = Memory {
        // Empty: the first cycle sets it to the recorded primary.
        last_writable: (String::new(), Instant::now()),
        last_reason: String::new(),
        next_rejoin: Instant::now(),
        rejoin_failures: 0,
        recloned_at: HashMap::new(),
        clone_tried: HashMap::new(),
        acted_at: 0.0,
    };
    while next_snapshot(&mut latest, &mut stop).await {
        let Some(snap) = latest.borrow_and_update().clone() else { continue };
        if snap.taken_unix <= mem.acted_at {
            continue;
        }
        let lock = move_lock(&ctx);
        // One read of the record per cycle; a recorded primary the config
        // lacks stops automatic action as an unreadable record does.
        let (action, reason) = match ClusterView::read(&ctx) {
            Ok(view) => {
                let facts = facts(&env, &snap, &view, &mut mem, lock.is_err()).await;
                decide(&facts)
            }
            Err(e) => (Action::Nothing, format!("no automatic action while the state cannot be read: {e}")),
        };
        say(&ctx, &mut mem, &reason, &out);
        if !matches!(action, Action::Nothing | Action::WaitForRestart) {
            act(&env, &snap, action, &mut mem).await;
            mem.acted_at = crate::domain::time::now_unix();
        }
        drop(lock);
    }
}

/// `status` shows every sentence; the log only a change of gist (sentences
/// count seconds, which would log every cycle).
fn say(ctx: &Ctx, mem: &mut Memory, reason: &str, out: &Output) {
    if reason == mem.last_reason {
        return;
    }
    let names: Vec<&str> = ctx.cfg.nodes.iter().map(|n| n.name.as_str()).collect();
    if gist(reason, &names) != gist(&mem.last_reason, &names) {
        out.info(format!("ha: {reason}"));
    }
    if let Err(e) = crate::pg::fsutil::write_atomic(&ctx.layout.ha_file(), reason.as_bytes(), 0o644) {
        out.info(format!("ha: cannot record the decision for `status`: {e}"));
    }
    mem.last_reason = reason.to_string();
}

/// This cycle's facts, from one snapshot and one read of the record.
async fn facts(env: &Env, snap: &Snapshot, state: &ClusterView, mem: &mut Memory, move_in_progress: bool) -> Facts {
    let (ctx, sup) = (env.ctx.as_ref(), &env.sup);
    let primary = state.primary.name.clone();
    let ttl = ctx.cfg.failover.primary_start_timeout;
    let nodes = &snap.status.nodes;
    let seen = nodes.iter().find(|n| n.name == primary);
    let writable = seen.is_some_and(|n| n.is_writable_primary());
    if mem.last_writable.0 != primary {
        mem.last_writable = (primary.clone(), Instant::now());
    }
    if writable {
        mem.last_writable.1 = Instant::now();
    }
    let leader = renew_and_read_lease(env, &primary, writable).await;
    let held = |n: &str| state.holds_back(n);
    Facts {
        mode: ctx.cfg.failover.mode,
        primary: primary.clone(),
        primary_writable: writable,
        down_for: (!writable).then(|| mem.last_writable.1.elapsed()),
        primary_start_timeout: ttl,
        leader,
        // In the sync modes only a synchronous standby may be promoted.
        candidates: crate::ops::moves::failover::sync_filter(
            ctx,
            nodes.iter().filter(|n| n.name != primary).filter_map(|n| Candidate::from_status(&ctx.cfg, n)).collect(),
            false,
        )
        .unwrap_or_default(),
        fenced: state.fenced.clone(),
        rejoin_due: ctx.cfg.failover.auto_rejoin
            && ctx.cfg.failover.mode == super::Mode::Automatic
            && Instant::now() >= mem.next_rejoin,
        move_in_progress,
        lost: lost_slots(ctx, snap, state, &primary),
        auto_reclone: ctx.cfg.replication.auto_reclone,
        recently_recloned: mem
            .recloned_at
            .iter()
            .filter(|(_, t)| t.elapsed() < super::RECLONE_QUIET)
            .map(|(n, _)| n.clone())
            .collect(),
        archive: ctx.cfg.archive.is_some(),
        paused: state.paused.clone(),
        primary_in_recovery: seen.is_some_and(|n| {
            n.state == crate::observe::status::NodeState::Running && n.role == Some(crate::config::Role::Replica)
        }),
        others_writable: nodes
            .iter()
            .filter(|n| n.name != primary && n.is_writable_primary())
            .map(|n| n.name.clone())
            .collect(),
        misfollowing: nodes
            .iter()
            .filter(|n| {
                n.name != primary
                    && n.state == crate::observe::status::NodeState::Running
                    && n.role == Some(crate::config::Role::Replica)
            })
            .filter_map(|n| Some((n.name.clone(), n.upstream.clone().filter(|u| *u != primary)?)))
            .collect(),
        interrupted: nodes
            .iter()
            .filter(|n| {
                n.state == crate::observe::status::NodeState::Stopped
                    && !held(&n.name)
                    && crate::ops::control::stopped_by_move(ctx, &n.name)
            })
            .map(|n| n.name.clone())
            .collect(),
        no_data: without_data(ctx, sup, state, mem, &primary),
        stale_slots: nodes
            .iter()
            .filter(|n| {
                n.name != primary
                    && n.state == crate::observe::status::NodeState::Running
                    && n.role == Some(crate::config::Role::Replica)
            })
            .filter(|n| n.standby_slots.as_ref().is_some_and(|s| s.iter().any(|s| ours(ctx, s))))
            .map(|n| n.name.clone())
            .collect(),
    }
}

/// The primary's lease: `acquire` renews it for the holder while it is
/// writable and takes it when free; then who holds it (None when the
/// store does not answer, which is said).
async fn renew_and_read_lease(env: &Env, primary: &str, writable: bool) -> Option<String> {
    let (dcs, out) = (env.dcs.as_ref(), &env.out);
    if writable {
        if let Err(e) = dcs.acquire(primary, env.ctx.cfg.failover.primary_start_timeout).await {
            out.info(format!("ha: renewing the leader lease of {primary} failed: {e}"));
        }
    }
    match dcs.leader().await {
        Ok(l) => l,
        Err(e) => {
            out.info(format!("ha: reading the leader lease failed: {e}"));
            None
        }
    }
}

/// Standbys whose slot lost WAL they need (and whether a user stopped
/// them), leaving out those already marked needs-reclone.
fn lost_slots(ctx: &Ctx, snap: &Snapshot, state: &ClusterView, primary: &str) -> Vec<(String, bool)> {
    snap.status
        .slots
        .iter()
        .filter(|s| s.wal_status.as_deref() == Some("lost"))
        .filter_map(|s| ctx.cfg.nodes.iter().find(|n| n.name != primary && crate::config::slot_name(&n.name) == s.slot))
        .filter(|n| !state.needs_reclone.contains(&n.name))
        .map(|n| (n.name.clone(), ctx.layout.stop_marker(&n.name).exists()))
        .collect()
}

/// This supervisor's standbys with no data dir (a re-clone was killed, or
/// the dir was removed) that should be cloned again: not fenced, not
/// stopped by the user, not tried within CLONE_RETRY.
fn without_data(ctx: &Ctx, sup: &Supervisor, state: &ClusterView, mem: &Memory, primary: &str) -> Vec<String> {
    ctx.cfg
        .nodes
        .iter()
        .filter(|n| n.name != primary && sup.nodes().contains(&n.name))
        .filter(|n| !n.data_dir.join("PG_VERSION").exists() && !state.fenced.contains(&n.name))
        // `pgrepl down NODE` (an empty marker) means leave it alone.
        .filter(|n| !ctx.layout.stop_marker(&n.name).exists() || crate::ops::control::stopped_by_move(ctx, &n.name))
        .filter(|n| mem.clone_tried.get(&n.name).is_none_or(|t| t.elapsed() >= CLONE_RETRY))
        .map(|n| n.name.clone())
        .collect()
}

/// A slot pgrepl makes: named after a configured node.
fn ours(ctx: &Ctx, slot: &str) -> bool {
    ctx.cfg.nodes.iter().any(|n| crate::config::slot_name(&n.name) == slot)
}

/// Carry out one action; failures are logged (the next cycle decides again).
async fn act(env: &Env, snap: &Snapshot, action: Action, mem: &mut Memory) {
    let (ctx, sup, out) = (&env.ctx, &env.sup, &env.out);
    let control = Control::new(std::sync::Arc::new(sup.clone()));
    let primary = match crate::store::view::ClusterView::read(ctx) {
        Ok(v) => v.primary,
        Err(e) => return out.info(format!("ha: not acting: {e}")),
    };
    let node = |name: &str| ctx.cfg.node(name).cloned();
    match action {
        Action::Nothing | Action::WaitForRestart => {}
        Action::Failover { to } => failover(env, &control, snap, &to).await,
        Action::FinishPromotion { node: name } => finish_promotion(env, &name).await,
        Action::Repoint { node: name, from } => repoint(env, &control, &name, &from, &primary).await,
        Action::Demote { node: name } => demote(env, &control, &name).await,
        Action::StartStopped { node: name } => {
            let Ok(n) = node(&name) else { return };
            if let Err(e) = control.start(ctx, &n).await {
                out.info(format!("ha: starting {name} failed: {e}"));
            }
        }
        Action::DropStaleSlots { node: name } => {
            let Ok(n) = node(&name) else { return };
            if let Err(e) = crate::ops::moves::drop_stale_slots(ctx, &n).await {
                out.info(format!("ha: dropping stale slots on {name} failed: {e}"));
            }
        }
        Action::RecreateSlot { .. } => {
            if let Err(e) = crate::ops::moves::ensure_slots(ctx, &primary).await {
                out.info(format!("ha: recreating a lost slot failed: {e}"));
            }
        }
        Action::MarkNeedsReclone { node: name } => {
            let Ok(n) = node(&name) else { return };
            if let Err(e) = crate::ops::moves::set_needs_reclone(ctx, &n, true) {
                return out.info(format!("ha: marking {name} needs-reclone failed: {e}"));
            }
            crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::NeedsReclone, &name, &mem.last_reason, out).await;
            // It cannot stream any more; keep it from spinning.
            if let Err(e) = control.stop(ctx, &n, crate::pg::process::StopMode::Fast).await {
                out.info(format!("ha: stopping {name} failed: {e}"));
            }
        }
        Action::Reclone { node: name } => {
            if ctx.cfg.node(&name).is_ok_and(|n| !n.data_dir.join("PG_VERSION").exists()) {
                mem.clone_tried.insert(name.clone(), Instant::now());
            } else {
                mem.recloned_at.insert(name.clone(), Instant::now());
            }
            // A node the user stopped stays stopped; one a move stopped runs.
            let start = !ctx.layout.stop_marker(&name).exists() || crate::ops::control::stopped_by_move(ctx, &name);
            if let Err(e) = crate::ops::moves::rejoin::reclone(ctx, &control, &name, false, start, out).await {
                out.info(format!("ha: re-cloning {name} failed: {e}"));
            }
        }
        Action::Rejoin { node: name } => match crate::ops::moves::rejoin::rejoin(ctx, &control, &name, out).await {
            Ok(()) => {
                mem.rejoin_failures = 0;
                mem.next_rejoin = Instant::now() + ctx.cfg.failover.rejoin_interval;
            }
            Err(e) => {
                let wait = rejoin_backoff(ctx.cfg.failover.rejoin_interval, mem.rejoin_failures);
                mem.rejoin_failures += 1;
                mem.next_rejoin = Instant::now() + wait;
                // The whole error: pg_rewind's stderr is what says why.
                out.info(format!("ha: rejoining {name} failed, retrying in {}s: {e}", wait.as_secs()));
            }
        },
    }
}

/// Stop a node that takes writes beside the recorded primary: fenced in
/// the record first (no start path brings it back as a primary), then
/// killed with its processes, so it takes no more writes; the rejoin that
/// follows rewinds it. The snapshot said it was writable: asked again
/// directly first, since a snapshot gathered across a move can show the
/// old primary writable beside the new one.
async fn demote(env: &Env, control: &Control, name: &str) {
    let (ctx, out) = (&env.ctx, &env.out);
    let Ok(n) = ctx.cfg.node(name).cloned() else { return };
    let writable = match ctx.connect(&n).await {
        Ok(c) => c.query_one("SELECT NOT pg_is_in_recovery()", &[]).await.is_ok_and(|r| r.get::<_, bool>(0)),
        Err(_) => false,
    };
    if !writable {
        return out.info(format!("ha: {name} no longer takes writes; nothing to stop"));
    }
    if let Err(e) = crate::ops::moves::set_fenced(ctx, &n, true) {
        return out.info(format!("ha: marking {name} fenced failed, so it is not stopped: {e}"));
    }
    match control.stop(ctx, &n, crate::pg::process::StopMode::Kill).await {
        Ok(()) => out.info(format!("ha: {name}: stopped; it rejoins as a standby")),
        Err(e) => out.info(format!("ha: stopping {name} failed: {e}")),
    }
}

/// Automatic failover to `to`, under the leader lease taken for it first:
/// the store, not this loop's opinion, decides who may be primary.
async fn failover(env: &Env, control: &Control, snap: &Snapshot, to: &str) {
    let (ctx, dcs, out) = (&env.ctx, env.dcs.as_ref(), &env.out);
    match dcs.acquire(to, ctx.cfg.failover.primary_start_timeout).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => return out.info(format!("ha: taking the leader lease for {to} failed: {e}")),
    }
    // It has not accepted writes for primary_start_timeout: if it
    // still runs it is frozen or hung, and must not wake up writable.
    let kill = Some(crate::pg::process::StopMode::Kill);
    let known = Some(&snap.status);
    if let Err(e) = crate::ops::moves::failover::run_with(ctx, control, Some(to), kill, false, known, out).await {
        out.info(format!("ha: automatic failover to {to} failed: {e}"));
        if let Err(e) = dcs.release(to).await {
            out.info(format!("ha: releasing the leader lease of {to} failed: {e}"));
        }
    }
}

/// A move recorded `name` as the primary and was interrupted before the
/// promotion finished: finish it, under the leader lease.
async fn finish_promotion(env: &Env, name: &str) {
    let (ctx, dcs, out) = (&env.ctx, env.dcs.as_ref(), &env.out);
    match dcs.acquire(name, ctx.cfg.failover.primary_start_timeout).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => return out.info(format!("ha: taking the leader lease for {name} failed: {e}")),
    }
    let Ok(n) = ctx.cfg.node(name).cloned() else { return };
    let r = async {
        crate::ops::moves::promote(ctx, &n, ctx.cfg.supervisor.start_timeout).await?;
        crate::ops::moves::ensure_slots(ctx, &n).await
    };
    match r.await {
        Ok(()) => out.info(format!("ha: {name} promoted; the interrupted move is finished")),
        Err(e) => out.info(format!("ha: promoting {name} failed: {e}")),
    }
}

/// A standby that follows `from` instead of the primary follows the
/// primary again; what it followed loses the slot it no longer needs.
async fn repoint(env: &Env, control: &Control, name: &str, from: &str, primary: &crate::config::Node) {
    let (ctx, out) = (&env.ctx, &env.out);
    let node = |name: &str| ctx.cfg.node(name).cloned();
    let Ok(n) = node(name) else { return };
    let r = async {
        crate::ops::moves::repoint(ctx, control, &n, primary).await?;
        crate::ops::moves::ensure_slots(ctx, primary).await?;
        crate::ops::wait::wait_streaming(ctx, &n, primary).await?;
        // What it followed keeps the slot it used; a standby's slots
        // only hold WAL back.
        if let Ok(old) = node(from) {
            if old.name != primary.name && crate::pg::datadir::running_postmaster(&old.data_dir).is_some() {
                crate::ops::moves::drop_stale_slots(ctx, &old).await?;
            }
        }
        Ok::<(), crate::error::Error>(())
    };
    match r.await {
        Ok(()) => out.info(format!("ha: {name} follows {} again", primary.name)),
        Err(e) => out.info(format!("ha: repointing {name} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rejoins_back_off_to_five_minutes() {
        let i = Duration::from_secs(5);
        let waits: Vec<u64> = (0..8).map(|f| rejoin_backoff(i, f).as_secs()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(rejoin_backoff(i, 1000), Duration::from_secs(300));
    }
}
