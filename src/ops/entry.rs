//! The moves and node operations a user asks for by name, from the CLI or
//! the HTTP API. Each entry picks the path: this host's supervisor (the
//! move lock, stop markers and SIGHUP) on one machine, or the agents
//! through etcd across hosts. Both callers go through here, so a
//! `POST /switchover` does exactly what `pgrepl switchover` does.
//! Confirmation prompts stay with the CLI; the API's token is its consent.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::ops::control::{wait_move_lock, Control, MoveLock};
use crate::ops::moves::across::{self, Action};
use crate::ops::moves::{failover, rejoin, switchover};
use crate::output::Output;
use crate::store::ctx::Ctx;

/// How long a move waits for the HA task's brief hold of the move lock.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// Whether `node` is served by another host's agent (only across hosts).
fn elsewhere(ctx: &Ctx, node: &str) -> Result<bool> {
    Ok(ctx.cfg.etcd.is_some() && !ctx.is_here(ctx.cfg.node(node)?))
}

/// On one machine: this host's supervisor, and the move lock (waiting out
/// the HA task's brief hold), held until the move is done.
async fn this_host(ctx: &Ctx) -> Result<(Control, MoveLock)> {
    let control = Control::find(ctx)?;
    let lock = wait_move_lock(ctx, LOCK_WAIT).await?;
    Ok((control, lock))
}

/// `switchover`: across hosts the request in etcd is the lock and the
/// agents carry it out; on one machine this process runs it.
pub(crate) async fn switchover(ctx: &Arc<Ctx>, o: &switchover::Options, out: &Output) -> Result<()> {
    if ctx.cfg.etcd.is_some() {
        return across::switchover(ctx, o, out).await;
    }
    let (control, _lock) = this_host(ctx).await?;
    switchover::run(ctx, &control, o, out).await
}

/// `failover`.
pub(crate) async fn failover(ctx: &Arc<Ctx>, o: &failover::Options, out: &Output) -> Result<()> {
    if ctx.cfg.etcd.is_some() {
        return across::failover(ctx, o, out).await;
    }
    let (control, _lock) = this_host(ctx).await?;
    failover::run(ctx, &control, o, out).await
}

/// `rejoin NODE`: a node on another host is rejoined by its own agent.
pub(crate) async fn rejoin(ctx: &Arc<Ctx>, node: &str, out: &Output) -> Result<()> {
    if elsewhere(ctx, node)? {
        return across::node_action(ctx, node, Action::Rejoin, false, out).await;
    }
    let (control, _lock) = this_host(ctx).await?;
    rejoin::rejoin(ctx, &control, node, out).await
}

/// `reclone NODE` (`discard`: delete its data dir rather than keep it aside).
pub(crate) async fn reclone(ctx: &Arc<Ctx>, node: &str, discard: bool, out: &Output) -> Result<()> {
    if elsewhere(ctx, node)? {
        return across::node_action(ctx, node, Action::Reclone, discard, out).await;
    }
    let (control, _lock) = this_host(ctx).await?;
    rejoin::reclone(ctx, &control, node, discard, true, out).await
}

/// `restart [NODE...]`: nodes on other hosts by their own agents, one at a
/// time, then this host's (all of its running nodes when none is named).
pub(crate) async fn restart(ctx: &Arc<Ctx>, nodes: &[String], out: &Output) -> Result<()> {
    let mut here = Vec::new();
    for n in nodes {
        if elsewhere(ctx, n)? {
            across::node_action(ctx, n, Action::Restart, false, out).await?;
        } else {
            here.push(n.clone());
        }
    }
    if here.is_empty() && !nodes.is_empty() {
        return Ok(());
    }
    crate::ops::reload::restart(ctx, &here, out).await
}

/// `reload` (`dry_run`: say what would change, change nothing). Across
/// hosts every agent reloads its own nodes, with its own host's file, the
/// primary first (it applies roles, databases and slots): a node that is
/// down or whose agent is silent is reported, and the others still reload.
/// A dry run looks at this host's nodes only.
pub(crate) async fn reload(ctx: &Arc<Ctx>, dry_run: bool, out: &Output) -> Result<()> {
    if ctx.cfg.etcd.is_none() || dry_run {
        return crate::ops::reload::reload(ctx, None, dry_run, out).await;
    }
    let primary = crate::store::view::ClusterView::read(ctx)?.primary.name;
    let mut order: Vec<&crate::config::Node> = ctx.cfg.nodes.iter().filter(|n| !ctx.is_here(n)).collect();
    order.sort_by_key(|n| n.name != primary);
    let (first, rest) = order.split_at(usize::from(order.first().is_some_and(|n| n.name == primary)));
    let mut failed = Vec::new();
    for n in first {
        if let Err(e) = across::node_action(ctx, &n.name, Action::Reload, false, out).await {
            failed.push(format!("{}: {e}", n.name));
        }
    }
    if ctx.cfg.nodes.iter().any(|n| ctx.is_here(n)) {
        if let Err(e) = crate::ops::reload::reload(ctx, None, false, out).await {
            failed.push(format!("this host: {e}"));
        }
    }
    for n in rest {
        if let Err(e) = across::node_action(ctx, &n.name, Action::Reload, false, out).await {
            failed.push(format!("{}: {e}", n.name));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::error::Error::Refused(format!("not every node reloaded:\n{}", failed.join("\n"))))
    }
}
