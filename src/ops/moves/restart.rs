//! Restarting one running node in place (fast stop, start), shared by
//! `pgrepl restart` on the node's host and by the node's own agent when a
//! command on another host asks for it.

use std::time::Instant;

use crate::config::Node;
use crate::error::{Error, Result};
use crate::ops::control::Control;
use crate::output::Output;
use crate::pg::datadir;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;

/// Restart `node` (running here), `primary` being the cluster's primary:
/// a standby first replays up to the primary's current WAL (it checks its
/// settings against the last ones of the primary it replayed, so it must
/// see a restarted primary's new, lower values before it restarts with
/// them), and is back once it streams again.
pub(crate) async fn restart_node(
    ctx: &Ctx,
    control: &Control,
    node: &Node,
    primary: &Node,
    out: &Output,
) -> Result<()> {
    if datadir::running_postmaster(&node.data_dir).is_none() {
        return Err(Error::Refused(format!(
            "{} is not running; `pgrepl up {}` starts it (restart only restarts running nodes)",
            node.name, node.name
        )));
    }
    if node.name != primary.name {
        let lsn = primary_lsn(ctx, primary).await?;
        crate::ops::moves::wait_replayed_to(ctx, node, lsn, ctx.cfg.supervisor.start_timeout).await?;
    }
    let t = Instant::now();
    out.info(format!("{}: restarting", node.name));
    let why = format!("restart of {}", node.name);
    crate::ops::moves::settling(ctx, &why);
    control.stop(ctx, node, StopMode::Fast).await?;
    control.start(ctx, node).await?;
    if node.name == primary.name {
        out.info(format!("{}: back, accepting writes again after {:.1}s", node.name, t.elapsed().as_secs_f64()));
    } else {
        crate::ops::wait::wait_streaming(ctx, node, primary).await?;
        out.info(format!("{}: back and streaming after {:.1}s", node.name, t.elapsed().as_secs_f64()));
    }
    crate::ops::moves::settling(ctx, &why);
    Ok(())
}

/// The primary's current WAL position: through its socket when it runs
/// here, else over TCP as the replication role.
async fn primary_lsn(ctx: &Ctx, primary: &Node) -> Result<crate::domain::lsn::Lsn> {
    let c = if ctx.cfg.etcd.is_some() && !ctx.is_here(primary) {
        ctx.connect_remote(primary).await?
    } else {
        ctx.connect(primary).await?
    };
    let lsn: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| Error::sql("reading the primary's WAL position", e))?
        .get(0);
    lsn.parse().map_err(Error::Other)
}
