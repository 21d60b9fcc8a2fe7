//! `pgrepl rejoin NODE` and `pgrepl reclone NODE`: bring a former primary
//! (or any diverged node) back as a standby of the current primary.
//!
//! Rejoin checks first — same cluster, same major, data checksums or
//! wal_log_hints — then runs pg_rewind. If rewind is impossible or fails,
//! the node stays stopped, is marked `needs-reclone`, and the message names
//! the next step. A half-rewound dir is never started. Reclone makes a fresh
//! base backup, moving the old dir aside unless `--discard`.

use std::sync::Arc;

use super::{ensure_slots, set_needs_reclone, Steps};
use crate::config::{Node, Role};
use crate::error::{Error, Result};
use crate::ops::configure::write_node_files;
use crate::ops::control::Control;
use crate::output::Output;
use crate::pg::datadir::{self, DirState};
use crate::pg::process::StopMode;
use crate::pg::{controldata, rewind};
use crate::store::ctx::Ctx;

fn not_primary<'a>(ctx: &'a Ctx, name: &str, what: &str) -> Result<(&'a Node, Node)> {
    let node = ctx.cfg.node(name)?;
    let primary = crate::store::view::ClusterView::read(ctx)?.primary;
    if node.name == primary.name {
        return Err(Error::Refused(format!("{what} refused: {name} is the current primary")));
    }
    Ok((node, primary))
}

/// Run `rejoin`.
pub(crate) async fn rejoin(ctx: &Arc<Ctx>, control: &Control, name: &str, out: &Output) -> Result<()> {
    let (node, primary) = not_primary(ctx, name, "rejoin")?;
    // Without pg_rewind of the server's major, only a node that has not
    // diverged can rejoin (as it is); that is judged once it is stopped.
    let tools = ctx.bin()?.require_matched(&["pg_controldata", "pg_rewind"], "rejoin");
    let mut steps = Steps::new(out);
    let state = ctx.store().load()?;
    let reclone = format!("`pgrepl reclone {name}`");
    // A healthy standby of the primary has nothing to rejoin: say so and
    // leave it running (a rejoin would stop and restart it for nothing).
    if !state.fenced.contains(&node.name) && !state.needs_reclone.contains(&node.name) {
        let s = crate::observe::status::gather::gather_once(ctx).await?;
        let healthy = s.nodes.iter().any(|n| {
            n.name == node.name && n.is_streaming_replica() && n.upstream.as_deref() == Some(primary.name.as_str())
        });
        if healthy {
            steps.say(format!("{name} already streams from the primary {}; nothing to do", primary.name));
            return Ok(());
        }
    }
    // Checks that need nothing stopped, so a refusal leaves the node as it was.
    match datadir::inspect(&node.data_dir)? {
        DirState::Postgres { system_id, major } => {
            if state.system_id.is_some_and(|s| s != system_id) {
                return Err(Error::Refused(format!(
                    "rejoin refused, nothing changed: {}'s data dir belongs to another cluster (system identifier {system_id}, this cluster's is {}); pg_rewind cannot join them. Next step: {reclone}",
                    name,
                    state.system_id.unwrap_or_default()
                )));
            }
            if major != ctx.bin()?.major {
                return Err(Error::Refused(format!(
                    "rejoin refused, nothing changed: {name} holds PostgreSQL {major} data. Next step: {reclone}"
                )));
            }
        }
        _ => {
            return Err(Error::Refused(format!(
                "rejoin refused: {name} has no PostgreSQL data dir. Next step: {reclone}"
            )))
        }
    }
    if datadir::running_postmaster(&node.data_dir).is_some() {
        steps.step(format!("stopping {name}"));
    }
    control.stop(ctx, node, StopMode::Fast).await?;
    if let Err(missing) = tools {
        super::checkpoint(ctx, &primary).await?;
        let cf = crate::pg::controlfile::read(&node.data_dir)?;
        let verdict = if cf.clean_shutdown() {
            let (tli, history) = super::history::history_of(ctx, &primary).await?;
            super::history::no_divergence(cf.timeline, cf.checkpoint, tli as u32, &history)
        } else {
            Err(format!("it was not shut down cleanly ({}), so only pg_rewind can tell", cf.state_name()))
        };
        match verdict {
            Ok(why) => steps.say(format!("{name}: {why}: no rewind is needed")),
            Err(why) => {
                return Err(Error::BinariesNotFound(format!(
                    "{name} cannot follow {} as it is: {why}. {missing}. {name} stays stopped and untouched; or make a fresh copy: {reclone}",
                    primary.name
                )))
            }
        }
        ensure_slots(ctx, &primary).await?;
    } else {
        rewind_to_follow(ctx, node, &primary, &mut steps, out).await?;
    }
    start_following(ctx, control, node, &primary, &mut steps).await?;
    let done = format!("{name} rejoined as a standby of {}", primary.name);
    crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::Rejoin, name, &done, out).await;
    Ok(())
}

/// The pg_rewind half of `rejoin`: refuse a dir pg_rewind cannot work on,
/// else rewind it (or find it had not diverged).
async fn rewind_to_follow(
    ctx: &Arc<Ctx>,
    node: &Node,
    primary: &Node,
    steps: &mut Steps<'_>,
    out: &Output,
) -> Result<()> {
    let name = node.name.as_str();
    let reclone = format!("`pgrepl reclone {name}`");
    let cd = controldata::read(ctx.bin()?, &ctx.runas, &node.data_dir).await?;
    if !cd.rewindable() {
        set_needs_reclone(ctx, node, true)?;
        return Err(Error::Refused(format!(
            "rejoin refused: {name} has neither data checksums nor wal_log_hints, so pg_rewind cannot work; its data dir is untouched and it stays stopped. Next step: {reclone}"
        )));
    }
    steps.step(format!(
        "pg_rewind {name} from {} (timeline {} on {name})",
        primary.name,
        cd.timeline.map_or("?".into(), |t| t.to_string())
    ));
    ensure_slots(ctx, primary).await?;
    super::checkpoint(ctx, primary).await?;
    match super::rewind_from(ctx, node, primary, false).await {
        Ok(rewind::Rewound::NotNeeded(how)) => steps.say(format!("{name} had not diverged; no rewind needed ({how})")),
        Ok(rewind::Rewound::Done(how)) => steps.say(format!("{name} rewound ({how})")),
        Err(e) if e.to_string().contains("single-user mode") => {
            // pg_rewind first runs crash recovery on the target; a node that
            // cannot start yet is not a node that cannot be rewound.
            return Err(Error::Refused(format!(
                "rejoin failed: {name} cannot start for pg_rewind's crash recovery yet (see its log); it stays stopped. Fix what keeps it from starting, then rejoin again: {e}"
            )));
        }
        Err(e) => {
            set_needs_reclone(ctx, node, true)?;
            let why = format!("rejoin failed: pg_rewind could not resync {name}: {e}\n{name} stays stopped (marked needs-reclone) and will not be started as a primary. Next step: {reclone}");
            crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::NeedsReclone, name, &why, out).await;
            return Err(Error::Refused(why));
        }
    }
    Ok(())
}

/// Write standby settings, start, and wait until it streams.
async fn start_following(
    ctx: &Arc<Ctx>,
    control: &Control,
    node: &Node,
    primary: &Node,
    steps: &mut Steps<'_>,
) -> Result<()> {
    write_node_files(ctx, node, &node.data_dir, Role::Replica, primary)?;
    // Its files now say standby: nothing holds it back any more.
    set_needs_reclone(ctx, node, false)?;
    super::set_fenced(ctx, node, false)?;
    steps.step(format!("starting {} as a standby of {}", node.name, primary.name));
    control.start(ctx, node).await?;
    super::drop_stale_slots(ctx, node).await?;
    crate::ops::wait::wait_streaming(ctx, node, primary).await?;
    set_needs_reclone(ctx, node, false)?;
    super::set_fenced(ctx, node, false)?;
    super::settling(ctx, &format!("start of {} as a standby", node.name));
    steps.say(format!("{} streams from {}", node.name, primary.name));
    Ok(())
}

/// Run `reclone`; with `start`, the node is started and followed after the clone.
pub(crate) async fn reclone(
    ctx: &Arc<Ctx>,
    control: &Control,
    name: &str,
    discard: bool,
    start: bool,
    out: &Output,
) -> Result<()> {
    let (node, primary) = not_primary(ctx, name, "reclone")?;
    let mut steps = Steps::new(out);
    // An automatic re-clone of a node the user stopped leaves it stopped.
    let keep_stopped = !start;
    steps.step(format!("stopping {name}"));
    control.stop(ctx, node, StopMode::Fast).await?;
    ensure_slots(ctx, &primary).await?;
    if discard && node.data_dir.exists() {
        steps.step(format!("discarding {} (--discard)", node.data_dir.display()));
        std::fs::remove_dir_all(&node.data_dir).map_err(|e| Error::io(&node.data_dir, e))?;
    }
    steps.step(format!("cloning {name} from {}", primary.name));
    crate::ops::clone::clone(ctx, node, &primary, true, out, None).await?;
    // The data dir is fresh: nothing keeps the node from starting any more.
    set_needs_reclone(ctx, node, false)?;
    if keep_stopped {
        crate::ops::control::keep_stopped(ctx, name)?;
        let done = format!("{name} re-cloned; it stays stopped as you left it: `pgrepl up {name}` starts it");
        steps.say(&done);
        crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::Reclone, name, &done, out).await;
        return Ok(());
    }
    start_following(ctx, control, node, &primary, &mut steps).await?;
    let done = format!("{name} re-cloned from {} and streaming", primary.name);
    crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::Reclone, name, &done, out).await;
    Ok(())
}
