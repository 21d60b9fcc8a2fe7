//! The leader's side of a move a person asked for across hosts, driven by
//! the request a command left in etcd (`requests/move`).
//!
//! `failover --stop-primary`: the leader marks itself fenced, fast-stops
//! its postgres and gives up its key in one transaction (the request moves
//! to `released`); the target, or the best replica, takes it.
//!
//! Switchover, one step per HA cycle, so the lease is renewed in between:
//! 1. `requested`: check the target from this host's snapshot (a streaming
//!    replica within `--max-lag`), CHECKPOINT, fast-stop the primary (its
//!    shutdown checkpoint streams to the standbys) → `stopped` at that LSN;
//! 2. `stopped`: once the target has replayed past it, give up the leader
//!    key in one transaction guarded by "the key still names me" →
//!    `handed_over`; the target's loop takes the key and promotes.
//!
//! While stopped the leader still holds its key (a recorded primary that
//! is down keeps it for its start window), so if the target never catches
//! up, or the command gives up, it starts again as the primary: exactly one
//! primary either way, and no acknowledged commit is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::member::Handover;
use crate::config::Node;
use crate::domain::lsn::Lsn;
use crate::domain::units::ByteSize;
use crate::observe::snapshot::Snapshot;
use crate::ops::control::Control;
use crate::ops::moves::switchover::choose_target;
use crate::output::Output;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;
use crate::store::dcs::Dcs;
use crate::store::etcd::{Kind, Move, Progress};

/// The lead a request has a leader give up, once it has (a switchover
/// handed over; a failover asked for and not over): who gives it up, and to
/// whom (None: the best replica).
pub(crate) fn giving_up(m: &Move) -> Option<Handover> {
    let to = (!m.to.is_empty()).then(|| m.to.clone());
    match (m.kind, m.progress) {
        (Kind::Switchover, Progress::HandedOver) => Some(Handover { from: m.from.clone(), to }),
        (Kind::Failover, p) if !matches!(p, Progress::Done | Progress::Failed) => {
            Some(Handover { from: m.from.clone(), to })
        }
        _ => None,
    }
}

/// One node's loop, as far as requests concern it.
pub(crate) struct Mine<'a> {
    pub ctx: &'a Arc<Ctx>,
    pub control: &'a Control,
    pub dcs: &'a dyn Dcs,
    pub node: &'a Node,
    /// While its postgres is stopped for a switchover it leads: until when
    /// it waits for the target.
    pub handing: &'a mut Option<Instant>,
    /// It gave up the lead of a failover: it rejoins as a standby.
    pub fenced: &'a mut bool,
    pub out: &'a Output,
}

impl Mine<'_> {
    /// Act on the request, if it is this node's to act on. `leads`: this
    /// cycle renewed its lease as a running primary.
    pub(crate) async fn on_request(&mut self, request: Option<&Move>, leads: bool, snap: Option<&Snapshot>) {
        let (ctx, control, node, out) = (self.ctx, self.control, self.node, self.out);
        match request.filter(|r| r.from == node.name) {
            Some(r) if r.kind == Kind::Failover && r.stop_primary && r.progress == Progress::Requested && leads => {
                self.step_down(r).await
            }
            Some(r) if r.kind == Kind::Failover => {}
            Some(r) if r.progress == Progress::HandedOver => self.await_take_over(r).await,
            Some(r) if r.progress == Progress::Done => *self.handing = None,
            Some(r) if r.progress == Progress::Stopped || (r.progress == Progress::Requested && leads) => {
                drive(ctx, control, node, r, snap, self.handing, out).await
            }
            _ if self.handing.is_some() => {
                abort(ctx, control, node, self.handing, "the switchover failed or its command gave up", out).await
            }
            _ => {}
        }
    }

    /// After handing the lead over: the target takes the key within two
    /// leases, or (its agent died in between) the handover has failed and
    /// this node starts again as the primary, instead of the cluster
    /// waiting leaderless for the request to expire.
    async fn await_take_over(&mut self, r: &Move) {
        match self.dcs.leader().await {
            // Taken: nothing left to wait for (and nothing to undo if the
            // request is gone before this loop sees it done).
            Ok(Some(_)) => return *self.handing = None,
            // Unknown this cycle: look again at the next.
            Err(_) => return,
            Ok(None) => {}
        }
        let ttl = self.ctx.cfg.etcd.as_ref().map_or(Duration::from_secs(3), |e| e.ttl);
        let until = *self.handing.get_or_insert_with(|| Instant::now() + ttl * 2);
        if Instant::now() < until {
            return;
        }
        let why = format!("{} did not take the lead within {}s", r.to, (ttl * 2).as_secs());
        if let Some(requests) = self.ctx.requests() {
            let _ = requests.update(|s| {
                s.progress = Progress::Failed;
                s.outcome = Some(format!("{why}; {} starts again as the primary", r.from));
            });
        }
        abort(self.ctx, self.control, self.node, self.handing, &why, self.out).await;
    }

    /// `failover --stop-primary`: fenced first (so nothing starts it as a
    /// primary again), then stopped, then the key given up.
    async fn step_down(&mut self, r: &Move) {
        let (ctx, node, out) = (self.ctx, self.node, self.out);
        let (Some(requests), Some(key)) = (ctx.requests(), ctx.leader_key()) else { return };
        let name = node.name.as_str();
        if let Err(e) = crate::ops::moves::set_fenced(ctx, node, true) {
            return out.info(format!("ha: failover asked: cannot mark {name} fenced ({e}); it stays the primary"));
        }
        *self.fenced = true;
        if let Err(e) = self.control.stop(ctx, node, StopMode::Fast).await {
            out.info(format!("ha: failover asked: stopping {name} failed ({e}); killing it"));
            let _ = self.control.stop(ctx, node, StopMode::Kill).await;
        }
        let to = if r.to.is_empty() { "the best replica".to_string() } else { r.to.clone() };
        let step = format!("{name} is fenced and stopped, and gives up the lead to {to}");
        match requests.give_up_lead(&key, name, Progress::Released, &step) {
            Ok(true) => {
                out.info(format!("ha: failover asked: {step}"));
                // Its key is gone; the lease it hung on goes too.
                let _ = self.dcs.release(name).await;
            }
            _ => {
                // The request is gone or changed: it is still the leader.
                let _ = crate::ops::moves::set_fenced(ctx, node, false);
                *self.fenced = false;
                let _ = self.control.start(ctx, node).await;
                out.info(format!("ha: failover asked, but its request is gone: {name} is the primary again"));
            }
        }
    }
}

/// Advance a switchover in which `node` is the leader giving up the lead.
/// `handing` holds, while its postgres is stopped for it, until when it
/// waits for the target.
async fn drive(
    ctx: &Arc<Ctx>,
    control: &Control,
    node: &Node,
    req: &Move,
    snap: Option<&Snapshot>,
    handing: &mut Option<Instant>,
    out: &Output,
) {
    let Some(requests) = ctx.requests() else { return };
    let leader = Leader { ctx, control, node, req, requests: &requests, out };
    match req.progress {
        Progress::Requested if handing.is_none() => {
            if let Some(snap) = snap {
                leader.stop_for_it(snap, handing).await
            }
        }
        Progress::Stopped => leader.hand_over_when_replayed(handing).await,
        _ => {}
    }
}

/// The leader's side of a switchover request it is driving.
struct Leader<'a> {
    ctx: &'a Arc<Ctx>,
    control: &'a Control,
    node: &'a Node,
    req: &'a Move,
    requests: &'a crate::store::etcd::Requests,
    out: &'a Output,
}

impl Leader<'_> {
    /// The request failed: say so, and record why for the command.
    fn fail(&self, why: String) {
        self.out.info(format!("ha: switchover to {} failed: {why}", self.req.to));
        let _ = self.requests.update(|s| {
            s.progress = Progress::Failed;
            s.outcome = Some(why.clone());
        });
    }

    /// Requested: check the target, CHECKPOINT and fast-stop this leader,
    /// record its shutdown checkpoint and start the wait for the target.
    /// Any failure starts it again as the primary.
    async fn stop_for_it(&self, snap: &Snapshot, handing: &mut Option<Instant>) {
        let (ctx, control, node, req, requests) = (self.ctx, self.control, self.node, self.req, self.requests);
        let priority = |n: &str| ctx.cfg.node(n).map_or(1, |c| c.failover_priority);
        if let Err(why) = choose_target(&snap.status, &node.name, Some(&req.to), ByteSize(req.max_lag), &priority) {
            return self.fail(format!("refused, nothing changed: {why}"));
        }
        let Ok(target) = ctx.cfg.node(&req.to) else { return };
        let step = |s: &mut Move, p: Progress, msg: String| {
            s.progress = p;
            s.steps.push(msg);
        };
        let checkpoint = format!("CHECKPOINT on {}, then fast-stopping it", node.name);
        if !requests.update(|s| step(s, Progress::Stopping, checkpoint.clone())).unwrap_or(false) {
            return;
        }
        if let Err(e) = checkpoint_and_stop(ctx, control, node).await {
            let _ = control.start(ctx, node).await;
            return self.fail(format!("{e}; {} is the primary again, nothing changed", node.name));
        }
        let lsn = match crate::pg::controlfile::read(&node.data_dir) {
            Ok(cf) if cf.clean_shutdown() => cf.checkpoint,
            Ok(cf) => {
                let _ = control.start(ctx, node).await;
                return self.fail(format!(
                    "{} did not shut down cleanly ({}); it is the primary again",
                    node.name,
                    cf.state_name()
                ));
            }
            Err(e) => {
                let _ = control.start(ctx, node).await;
                return self.fail(format!("{e}; {} is the primary again", node.name));
            }
        };
        // Within the start window, in which the stopped leader keeps its key.
        let ttl = ctx.cfg.etcd.as_ref().map_or(Duration::from_secs(3), |e| e.ttl);
        let window = ctx.cfg.failover.primary_start_timeout.saturating_sub(ttl);
        *handing = Some(Instant::now() + Duration::from_secs(req.timeout_secs).min(window));
        let wait = format!("waiting for {} to replay past {}'s shutdown checkpoint {lsn}", target.name, node.name);
        let recorded = requests.update(|s| {
            step(s, Progress::Stopped, wait.clone());
            s.lsn = Some(lsn.to_string());
        });
        if !recorded.unwrap_or(false) {
            abort(ctx, control, node, handing, "the switchover request is gone", self.out).await;
        }
    }

    /// Stopped: once the target replayed past the shutdown checkpoint, give
    /// up the leader key to it (guarded: the key and the request are as
    /// read); past the deadline, start again as the primary.
    async fn hand_over_when_replayed(&self, handing: &mut Option<Instant>) {
        let (ctx, control, node, req, out) = (self.ctx, self.control, self.node, self.req, self.out);
        let until = *handing.get_or_insert_with(|| Instant::now() + Duration::from_secs(req.timeout_secs));
        let (Ok(target), Some(lsn)) = (ctx.cfg.node(&req.to), req.lsn.as_deref().and_then(|l| l.parse().ok())) else {
            return;
        };
        if replayed_past(ctx, target, lsn).await {
            let Some(key) = ctx.leader_key() else { return };
            let step = format!("{} replayed past {lsn}: {} hands the lead to {}", target.name, node.name, target.name);
            match self.requests.give_up_lead(&key, &node.name, Progress::HandedOver, &step) {
                Ok(true) => {
                    out.info(format!("ha: switchover: {step}"));
                    // Next: how long the target has to take the key.
                    *handing = None;
                }
                Ok(false) => abort(ctx, control, node, handing, "the leader key or the request changed", out).await,
                Err(e) => out.info(format!("ha: switchover: handing over failed ({e}); trying again")),
            }
        } else if Instant::now() > until {
            abort(ctx, control, node, handing, &format!("{} did not replay past {lsn} in time", target.name), out)
                .await;
            self.fail(format!(
                "{} did not replay past {}'s last WAL {lsn} in time; {} is the primary again, {} is unchanged",
                target.name, node.name, node.name, target.name
            ));
        }
    }
}

/// A switchover this leader stopped for is over without a handover (the
/// request failed or is gone): start its postgres again as the primary.
async fn abort(ctx: &Ctx, control: &Control, node: &Node, handing: &mut Option<Instant>, why: &str, out: &Output) {
    *handing = None;
    match control.start(ctx, node).await {
        Ok(()) => out.info(format!("ha: switchover abandoned ({why}); {} is the primary again", node.name)),
        Err(e) => out.info(format!("ha: switchover abandoned ({why}); starting {} again failed: {e}", node.name)),
    }
}

async fn checkpoint_and_stop(ctx: &Ctx, control: &Control, node: &Node) -> crate::error::Result<()> {
    let c = ctx.connect(node).await?;
    c.batch_execute("CHECKPOINT").await.map_err(|e| crate::error::Error::sql("checkpoint", e))?;
    drop(c);
    control.stop(ctx, node, StopMode::Fast).await
}

/// Whether `target` (on any host) has replayed past `lsn`, asked over TCP.
async fn replayed_past(ctx: &Ctx, target: &Node, lsn: Lsn) -> bool {
    let ask = async {
        let c = ctx.connect_remote(target).await.ok()?;
        let r = c.query_one("SELECT pg_last_wal_replay_lsn()::text", &[]).await.ok()?;
        r.get::<_, Option<String>>(0)?.parse::<Lsn>().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), ask).await.ok().flatten().is_some_and(|r| r > lsn)
}
