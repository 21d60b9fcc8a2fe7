//! `pgrepl switchover`: a planned move of the primary with zero data loss.
//!
//! Refuses before changing anything if the target does not exist, is not
//! streaming, or lags more than `--max-lag`. Then: CHECKPOINT; fast-stop
//! the old primary (its shutdown checkpoint streams to the standbys); wait
//! until the target has replayed past that checkpoint; promote it; make the
//! old primary its standby (checking with pg_rewind that no rewind is
//! needed); repoint the other replicas. If the target never catches up, the
//! old primary is started again as primary: exactly one primary either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{drop_stale_slots, ensure_slots, promote, record_primary, wait_replayed_past, Steps};
use crate::config::{Node, Role};
use crate::domain::units::ByteSize;
use crate::error::{Error, Result};
use crate::observe::status::gather::gather_once;
use crate::observe::status::ClusterStatus;
use crate::ops::configure::write_node_files;
use crate::ops::control::Control;
use crate::output::Output;
use crate::pg::process::StopMode;
use crate::pg::rewind;
use crate::store::ctx::Ctx;

/// The largest replay lag a target may have, unless the caller says otherwise.
pub(crate) const DEFAULT_MAX_LAG: &str = "1MB";
/// The deadline for each step, unless the caller says otherwise.
pub(crate) const DEFAULT_TIMEOUT: &str = "60s";

/// Options of `pgrepl switchover`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    pub to: Option<String>,
    pub max_lag: ByteSize,
    pub timeout: Duration,
}

/// Pick and check the target from a snapshot. Pure, so the refusals are unit-tested.
pub(crate) fn choose_target<'a>(
    s: &'a ClusterStatus,
    old: &str,
    to: Option<&str>,
    max_lag: ByteSize,
    priority: &dyn Fn(&str) -> u32,
) -> std::result::Result<&'a str, String> {
    let old_ok = s.nodes.iter().any(|n| n.name == old && n.is_writable_primary());
    if !old_ok {
        return Err(format!(
            "the primary {old} is not running as a writable primary; use `pgrepl failover` when the primary is down"
        ));
    }
    let lag = |n: &crate::observe::status::NodeStatus| n.replication.as_ref().and_then(|r| r.lag_bytes.replay);
    let target = match to {
        Some(t) => s.nodes.iter().find(|n| n.name == t).ok_or_else(|| format!("no node named `{t}`"))?,
        // The least lagging eligible replica; on equal lag, the higher priority.
        None => s
            .nodes
            .iter()
            .filter(|n| n.name != old && n.is_streaming_replica() && priority(&n.name) > 0)
            .min_by_key(|n| (lag(n).unwrap_or(u64::MAX), std::cmp::Reverse(priority(&n.name))))
            .ok_or_else(|| "no streaming replica with failover_priority above 0 to switch over to".to_string())?,
    };
    if priority(&target.name) == 0 {
        return Err(crate::domain::election::never_promoted(&target.name));
    }
    if target.name == old {
        return Err(format!("{old} is already the primary"));
    }
    if !target.is_streaming_replica() {
        return Err(format!(
            "{} is not a streaming replica (state: {}); it cannot take over without losing data",
            target.name, target.state
        ));
    }
    match lag(target) {
        Some(b) if b <= max_lag.0 => Ok(&target.name),
        Some(b) => Err(format!(
            "{} is {b} bytes behind, more than --max-lag {max_lag}; wait for it to catch up or raise --max-lag",
            target.name
        )),
        None => Err(format!("{}'s replay lag is unknown; it cannot be checked against --max-lag", target.name)),
    }
}

/// Run a switchover.
pub(crate) async fn run(ctx: &Arc<Ctx>, control: &Control, o: &Options, out: &Output) -> Result<()> {
    let old = crate::store::view::ClusterView::read(ctx)?.primary;
    let (before, target) = pick_target(ctx, &old, o).await?;
    let tl_before = before.nodes.iter().find(|n| n.name == old.name).and_then(|n| n.timeline);
    let mut steps = Steps::new(out);

    let why = format!("switchover to {}", target.name);
    super::settling(ctx, &why);
    let (final_lsn, t0) = stop_primary(ctx, control, &old, &mut steps).await?;

    steps.step(format!("waiting for {} to replay past {}'s shutdown checkpoint {final_lsn}", target.name, old.name));
    if let Err(e) = wait_replayed_past(ctx, &target, final_lsn, o.timeout).await {
        control.start(ctx, &old).await?;
        return Err(Error::Refused(format!(
            "switchover rolled back: {e}; {} is primary again, {} is unchanged",
            old.name, target.name
        )));
    }

    steps.step(format!("promoting {}", target.name));
    // The record first, then the promotion: if this command dies between the
    // two, the supervisor finishes promoting the recorded node, and the old
    // primary can only ever start again as its standby.
    record_primary(ctx, &target, &format!("switchover from {} to {} (promoting)", old.name, target.name))?;
    if let Err(e) = promote(ctx, &target, o.timeout).await {
        // The target may be half-way; the old primary holds every acknowledged commit.
        steps.say(format!("promotion failed ({e}); restarting {} as primary", old.name));
        record_primary(ctx, &old, &format!("switchover to {} rolled back: {e}", target.name))?;
        control.start(ctx, &old).await?;
        return Err(Error::Refused(format!("switchover rolled back: {e}; {} is primary again", old.name)));
    }
    let unavailable = t0.elapsed();
    record_primary(ctx, &target, &format!("switchover from {} to {}", old.name, target.name))?;
    super::history::record(ctx, crate::store::state::MoveKind::Switchover, &old, &target).await?;
    write_node_files(ctx, &target, &target.data_dir, Role::Primary, &target)?;
    ensure_slots(ctx, &target).await?;

    steps.step(format!("making {} a standby of {}", old.name, target.name));
    follow(ctx, control, &old, &target, &mut steps).await?;

    super::others_follow(ctx, control, &old, &target, &mut steps).await;
    let after = gather_once(ctx).await?;
    let tl_after = after.nodes.iter().find(|n| n.name == target.name).and_then(|n| n.timeline);
    let done = format!(
        "switchover complete: {} is primary (timeline {} -> {}); writes were unavailable for {:.2}s",
        target.name,
        tl_before.map_or("?".into(), |t| t.to_string()),
        tl_after.map_or("?".into(), |t| t.to_string()),
        unavailable.as_secs_f64()
    );
    steps.say(&done);
    super::settling(ctx, &why);
    crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::Switchover, &target.name, &done, out).await;
    Ok(())
}

/// The target (the one asked for, or the best replica) and the status it
/// was chosen from. A standby that has only just connected has not
/// reported its replay position yet: it gets a few seconds before its lag
/// is called unknown.
async fn pick_target(ctx: &Arc<Ctx>, old: &Node, o: &Options) -> Result<(ClusterStatus, Node)> {
    let settle = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let before = gather_once(ctx).await?;
        let priority = |n: &str| ctx.cfg.node(n).map_or(1, |c| c.failover_priority);
        match choose_target(&before, &old.name, o.to.as_deref(), o.max_lag, &priority) {
            Ok(t) => {
                let t = ctx.cfg.node(t)?.clone();
                return Ok((before, t));
            }
            Err(why) if why.contains("lag is unknown") && tokio::time::Instant::now() < settle => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(why) => return Err(Error::Refused(format!("switchover refused, nothing changed: {why}"))),
        }
    }
}

/// CHECKPOINT (so the stop is short), then a fast stop of the primary;
/// returns its shutdown checkpoint, its last WAL record, and when writes
/// stopped (the stop began). One that did not
/// shut down cleanly is started again and the switchover refused.
async fn stop_primary(
    ctx: &Ctx,
    control: &Control,
    old: &Node,
    steps: &mut Steps<'_>,
) -> Result<(crate::domain::lsn::Lsn, Instant)> {
    steps.step(format!("CHECKPOINT on {}", old.name));
    let c = ctx.connect(old).await?;
    c.batch_execute("CHECKPOINT").await.map_err(|e| Error::sql("checkpoint", e))?;
    drop(c);

    steps.step(format!("fast-stopping the primary {}", old.name));
    let t0 = Instant::now();
    control.stop(ctx, old, StopMode::Fast).await?;
    let cf = crate::pg::controlfile::read(&old.data_dir)?;
    if !cf.clean_shutdown() {
        control.start(ctx, old).await?;
        return Err(Error::Refused(format!(
            "switchover rolled back: {} did not shut down cleanly ({}); it is primary again",
            old.name,
            cf.state_name()
        )));
    }
    Ok((cf.checkpoint, t0))
}

/// Turn a cleanly stopped former primary into a standby of `primary`,
/// checking (not assuming) that its WAL did not diverge: with pg_rewind of
/// the server's major, by a dry run; without, by comparing its last
/// checkpoint with where the new timeline branched off (the same test
/// pg_rewind makes for a cleanly stopped target).
pub(crate) async fn follow(
    ctx: &Ctx,
    control: &Control,
    node: &Node,
    primary: &Node,
    steps: &mut Steps<'_>,
) -> Result<()> {
    super::checkpoint(ctx, primary).await?;
    if ctx.bin()?.require_matched(&["pg_rewind"], "pg_rewind").is_ok() {
        match super::rewind_from(ctx, node, primary, true).await? {
            rewind::Rewound::NotNeeded(_) => {
                steps.say(format!("{}: pg_rewind confirms no rewind is needed", node.name))
            }
            rewind::Rewound::Done(why) => {
                steps.say(format!("{}: pg_rewind finds its WAL diverged ({why}); rewinding", node.name));
                super::rewind_from(ctx, node, primary, false).await?;
            }
        }
    } else {
        let last = crate::pg::controlfile::read(&node.data_dir)?.checkpoint;
        let (tli, switch) = super::history::timeline_of(ctx, primary).await?;
        match switch {
            Some(at) if last < at => steps.say(format!(
                "{}: its last WAL record {last} is before timeline {tli} branched off at {at}: no rewind is needed",
                node.name
            )),
            _ => {
                super::set_needs_reclone(ctx, node, true)?;
                return Err(Error::Refused(format!(
                    "{} wrote WAL past the point where timeline {tli} branched off ({}), and pg_rewind of PostgreSQL {} is not installed to undo it; it stays stopped. {} is primary. Next step: `pgrepl reclone {}`",
                    node.name,
                    switch.map_or("unknown".into(), |l| l.to_string()),
                    ctx.bin()?.major,
                    primary.name,
                    node.name
                )));
            }
        }
    }
    write_node_files(ctx, node, &node.data_dir, Role::Replica, primary)?;
    control.start(ctx, node).await?;
    drop_stale_slots(ctx, node).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::snapshot::example;

    #[test]
    fn picks_the_least_lagging_streaming_replica() {
        let s = example().status;
        assert_eq!(choose_target(&s, "pg-1", None, ByteSize(1 << 20), &|_| 1), Ok("pg-2"));
    }

    #[test]
    fn refuses_a_lagging_missing_or_primary_target() {
        let s = example().status;
        let e = choose_target(&s, "pg-1", Some("pg-3"), ByteSize(1 << 20), &|_| 1).unwrap_err();
        assert_eq!(
            e,
            "pg-3 is 16777312 bytes behind, more than --max-lag 1MB; wait for it to catch up or raise --max-lag"
        );
        assert_eq!(
            choose_target(&s, "pg-1", Some("pg-9"), ByteSize(1 << 20), &|_| 1).unwrap_err(),
            "no node named `pg-9`"
        );
        assert_eq!(
            choose_target(&s, "pg-1", Some("pg-1"), ByteSize(1 << 20), &|_| 1).unwrap_err(),
            "pg-1 is already the primary"
        );
    }

    #[test]
    fn refuses_a_stopped_target() {
        let mut s = example().status;
        s.nodes[1].state = crate::observe::status::NodeState::Stopped;
        let e = choose_target(&s, "pg-1", Some("pg-2"), ByteSize(1 << 20), &|_| 1).unwrap_err();
        assert!(e.starts_with("pg-2 is not a streaming replica (state: stopped)"), "{e}");
    }

    #[test]
    fn a_priority_zero_replica_is_never_the_target() {
        let s = example().status;
        let never_pg2 = |n: &str| u32::from(n != "pg-2");
        // pg-2 lags least, but may not be promoted; pg-3 lags too much.
        let e = choose_target(&s, "pg-1", None, ByteSize(1 << 20), &never_pg2).unwrap_err();
        assert!(e.contains("pg-3 is 16777312 bytes behind"), "{e}");
        assert_eq!(choose_target(&s, "pg-1", None, ByteSize(1 << 30), &never_pg2), Ok("pg-3"));
        let e = choose_target(&s, "pg-1", Some("pg-2"), ByteSize(1 << 20), &never_pg2).unwrap_err();
        assert!(e.contains("failover_priority = 0"), "{e}");
    }
}
