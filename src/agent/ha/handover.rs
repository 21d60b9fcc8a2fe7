//! The leader's side of a switchover across hosts, driven by the request a
//! command left in etcd (`requests/switchover`). One step per HA cycle, so
//! the lease is renewed in between:
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

use crate::config::Node;
use crate::domain::lsn::Lsn;
use crate::domain::units::ByteSize;
use crate::observe::snapshot::Snapshot;
use crate::ops::control::Control;
use crate::ops::moves::switchover::choose_target;
use crate::output::Output;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;
use crate::store::etcd::{Progress, Switchover};

/// Advance a switchover in which `node` is the leader giving up the lead.
/// `handing` holds, while its postgres is stopped for it, until when it
/// waits for the target.
pub(crate) async fn drive(
    ctx: &Arc<Ctx>,
    control: &Control,
    node: &Node,
    req: &Switchover,
    snap: Option<&Snapshot>,
    handing: &mut Option<Instant>,
    out: &Output,
) {
    let Some(requests) = ctx.requests() else { return };
    let fail = |why: String| {
        out.info(format!("ha: switchover to {} failed: {why}", req.to));
        let _ = requests.update(|s| {
            s.progress = Progress::Failed;
            s.outcome = Some(why.clone());
        });
    };
    match req.progress {
        Progress::Requested if handing.is_none() => {
            let Some(snap) = snap else { return };
            let priority = |n: &str| ctx.cfg.node(n).map_or(1, |c| c.failover_priority);
            if let Err(why) = choose_target(&snap.status, &node.name, Some(&req.to), ByteSize(req.max_lag), &priority) {
                return fail(format!("refused, nothing changed: {why}"));
            }
            let Ok(target) = ctx.cfg.node(&req.to) else { return };
            let step = |s: &mut Switchover, p: Progress, msg: String| {
                s.progress = p;
                s.steps.push(msg);
            };
            let checkpoint = format!("CHECKPOINT on {}, then fast-stopping it", node.name);
            if !requests.update(|s| step(s, Progress::Stopping, checkpoint.clone())).unwrap_or(false) {
                return;
            }
            if let Err(e) = checkpoint_and_stop(ctx, control, node).await {
                let _ = control.start(ctx, node).await;
                return fail(format!("{e}; {} is the primary again, nothing changed", node.name));
            }
            let lsn = match crate::pg::controlfile::read(&node.data_dir) {
                Ok(cf) if cf.clean_shutdown() => cf.checkpoint,
                Ok(cf) => {
                    let _ = control.start(ctx, node).await;
                    return fail(format!(
                        "{} did not shut down cleanly ({}); it is the primary again",
                        node.name,
                        cf.state_name()
                    ));
                }
                Err(e) => {
                    let _ = control.start(ctx, node).await;
                    return fail(format!("{e}; {} is the primary again", node.name));
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
                abort(ctx, control, node, handing, "the switchover request is gone", out).await;
            }
        }
        Progress::Stopped => {
            let until = *handing.get_or_insert_with(|| Instant::now() + Duration::from_secs(req.timeout_secs));
            let (Ok(target), Some(lsn)) = (ctx.cfg.node(&req.to), req.lsn.as_deref().and_then(|l| l.parse().ok()))
            else {
                return;
            };
            if replayed_past(ctx, target, lsn).await {
                let Some(key) = ctx.leader_key() else { return };
                let step =
                    format!("{} replayed past {lsn}: {} hands the lead to {}", target.name, node.name, target.name);
                match requests.hand_over(&key, &node.name, &step) {
                    Ok(true) => {
                        out.info(format!("ha: switchover: {step}"));
                        *handing = None;
                    }
                    Ok(false) => abort(ctx, control, node, handing, "the leader key or the request changed", out).await,
                    Err(e) => out.info(format!("ha: switchover: handing over failed ({e}); trying again")),
                }
            } else if Instant::now() > until {
                abort(ctx, control, node, handing, &format!("{} did not replay past {lsn} in time", target.name), out)
                    .await;
                fail(format!(
                    "{} did not replay past {}'s last WAL {lsn} in time; {} is the primary again, {} is unchanged",
                    target.name, node.name, node.name, target.name
                ));
            }
        }
        _ => {}
    }
}

/// A switchover this leader stopped for is over without a handover (the
/// request failed or is gone): start its postgres again as the primary.
pub(crate) async fn abort(
    ctx: &Ctx,
    control: &Control,
    node: &Node,
    handing: &mut Option<Instant>,
    why: &str,
    out: &Output,
) {
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
