//! `pgrepl failover`: the primary is down; promote the best replica.
//!
//! Refuses while the old primary is running, unless `--stop-primary`, which first
//! stops it (fencing) — never two writable primaries. The old primary is
//! kept stopped (the supervisor will not restart it) until `pgrepl rejoin`.
//! Without `--to`, the most advanced replica on the latest timeline wins:
//! the highest received LSN; the others' missing WAL is reported.

use std::sync::Arc;
use std::time::Instant;

use super::{ensure_slots, promote, record_primary, Steps};
use crate::config::Role;
use crate::domain::election::{choose, Candidate};
use crate::error::{Error, Result};
use crate::observe::status::gather::gather_once;
use crate::observe::status::NodeStatus;
use crate::ops::configure::write_node_files;
use crate::ops::control::Control;
use crate::output::Output;
use crate::pg::datadir;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;

impl Candidate {
    /// From a status row: running replicas only.
    pub(crate) fn from_status(cfg: &crate::config::Config, n: &NodeStatus) -> Option<Candidate> {
        (n.state == crate::observe::status::NodeState::Running && n.role == Some(crate::config::Role::Replica)).then(
            || Candidate {
                name: n.name.clone(),
                timeline: n.timeline,
                received: n.received_lsn.or(n.replayed_lsn),
                replayed: n.replayed_lsn,
                priority: cfg.node(&n.name).map_or(1, |c| c.failover_priority),
            },
        )
    }
}

/// Run a failover.
/// In the sync modes, only a standby that was synchronous may be promoted
/// (it holds every acknowledged commit), unless `allow_async`.
pub(crate) fn sync_filter(
    ctx: &Ctx,
    cands: Vec<Candidate>,
    allow_async: bool,
) -> std::result::Result<Vec<Candidate>, String> {
    if allow_async || ctx.cfg.replication.durability == crate::domain::modes::Durability::Async {
        return Ok(cands);
    }
    let set = ctx.store().load().map_err(|e| e.to_string())?.sync_set;
    let sync = only_sync(ctx.cfg.replication.durability, &set, cands);
    if sync.is_empty() {
        return Err(format!(
            "no running standby was synchronous (last synchronous set: {}); promoting an asynchronous one may lose acknowledged commits. `--allow-data-loss` promotes one anyway",
            if set.is_empty() { "none".to_string() } else { set.join(", ") }
        ));
    }
    Ok(sync)
}

/// The candidates that may be promoted without losing an acknowledged
/// commit: all in async mode, else those in the recorded synchronous set.
pub(crate) fn only_sync(
    durability: crate::domain::modes::Durability,
    set: &[String],
    cands: Vec<Candidate>,
) -> Vec<Candidate> {
    if durability == crate::domain::modes::Durability::Async {
        return cands;
    }
    cands.into_iter().filter(|c| set.contains(&c.name)).collect()
}

/// Run a failover as `pgrepl failover` asks.
pub(crate) async fn run(ctx: &Arc<Ctx>, control: &Control, o: &Options, out: &Output) -> Result<()> {
    run_with(ctx, control, o.to.as_deref(), o.stop_primary.then_some(StopMode::Fast), o.allow_data_loss, None, out)
        .await
}

/// Options of `pgrepl failover`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Options {
    pub to: Option<String>,
    /// Stop a primary that still runs (fencing).
    pub stop_primary: bool,
    /// In the sync modes, promote a standby that was not synchronous.
    pub allow_data_loss: bool,
}

/// [`run`] with fencing and asynchronous promotion allowed separately.
/// `fence` is how a primary that still runs is stopped (None: refuse).
/// `known`: a snapshot taken while the primary was already down (the HA
/// loop's), whose replica positions cannot have moved since; without one,
/// every node is asked (which waits out the probe deadline of a node that
/// does not answer).
pub(crate) async fn run_with(
    ctx: &Arc<Ctx>,
    control: &Control,
    to: Option<&str>,
    fence: Option<StopMode>,
    allow_async: bool,
    known: Option<&crate::observe::status::ClusterStatus>,
    out: &Output,
) -> Result<()> {
    let old = crate::store::view::ClusterView::read(ctx)?.primary;
    let mut steps = Steps::new(out);
    let mut mode = StopMode::Fast;
    if let Some(pf) = datadir::running_postmaster(&old.data_dir) {
        match fence {
            Some(m) => mode = m,
            None => {
                return Err(Error::Refused(format!(
                    "failover refused: the primary {} is still running (pid {}). Use `pgrepl switchover` for a planned move, or `pgrepl failover --stop-primary` to stop it first",
                    old.name, pf.pid
                )))
            }
        }
    }
    let how = if mode == StopMode::Kill { "killing its processes" } else { "stopping it" };
    steps.step(format!("fencing {}: {how} and keeping it stopped", old.name));
    // Fenced in the record first: from here on no start path brings it back
    // as it is, even if this command dies half-way.
    super::set_fenced(ctx, &old, true)?;
    control.stop(ctx, &old, mode).await?;

    let gathered;
    let s = match known {
        Some(s) => s,
        None => {
            gathered = gather_once(ctx).await?;
            &gathered
        }
    };
    let cands: Vec<Candidate> =
        s.nodes.iter().filter(|n| n.name != old.name).filter_map(|n| Candidate::from_status(&ctx.cfg, n)).collect();
    let cands = sync_filter(ctx, cands, allow_async)
        .map_err(|why| Error::Refused(format!("failover refused: {why}; {} stays stopped", old.name)))?;
    let (best, missing) = choose(&cands, to)
        .map_err(|why| Error::Refused(format!("failover refused: {why}; {} stays stopped", old.name)))?;
    let target = ctx.cfg.node(&best.name)?.clone();
    steps.step(format!(
        "promoting {} (received up to {})",
        target.name,
        best.received.map_or("?".into(), |l| l.to_string())
    ));
    for (n, m) in &missing {
        match m {
            Some(0) => steps.say(format!("{n} has all of {}'s WAL", target.name)),
            Some(b) if *b > 0 => {
                steps.say(format!("{n} lacks {b} bytes of {}'s WAL; it will fetch them when it follows", target.name))
            }
            Some(b) => steps.say(format!(
                "warning: {n} (failover_priority 0) holds {} bytes of WAL {} never received; that WAL is not on the new primary, and {n} will need `pgrepl rejoin {n}`",
                -b,
                target.name
            )),
            None => steps.say(format!("{n}: how much WAL it lacks is unknown")),
        }
    }
    let t0 = Instant::now();
    // The record first, then the promotion: if this command dies between
    // the two, the record names a standby the supervisor finishes promoting,
    // never a promoted node it does not know about.
    let why = format!("failover from {} to {}", old.name, target.name);
    record_primary(ctx, &target, &why)?;
    promote(ctx, &target, ctx.cfg.supervisor.start_timeout).await?;
    super::history::record(ctx, crate::store::state::MoveKind::Failover, &old, &target).await?;
    write_node_files(ctx, &target, &target.data_dir, Role::Primary, &target)?;
    ensure_slots(ctx, &target).await?;
    super::others_follow(ctx, control, &old, &target, &mut steps).await;
    let done = format!(
        "failover complete: {} is primary ({:.2}s after fencing). {} stays stopped; `pgrepl rejoin {}` makes it a standby of {}",
        target.name,
        t0.elapsed().as_secs_f64(),
        old.name,
        old.name,
        target.name
    );
    steps.say(&done);
    super::settling(ctx, &format!("failover to {}", target.name));
    crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::Failover, &target.name, &done, out).await;
    Ok(())
}
