//! `pgrepl failover`: the primary is down; promote the best replica.
//!
//! Refuses while the old primary is running, unless `--stop-primary`, which first
//! stops it (fencing) — never two writable primaries. The old primary is
//! kept stopped (the supervisor will not restart it) until `pgrepl rejoin`.
//! Without `--to`, the most advanced replica on the latest timeline wins:
//! the highest received LSN; the others' missing WAL is reported.

use std::sync::Arc;
use std::time::Instant;

use super::{ensure_slots, promote, record_primary, repoint, Steps};
use crate::config::{Node, Role};
use crate::domain::lsn::Lsn;
use crate::error::{Error, Result};
use crate::observe::status::gather::gather_once;
use crate::observe::status::NodeStatus;
use crate::ops::configure::write_node_files;
use crate::ops::control::Control;
use crate::output::Output;
use crate::pg::datadir;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;

/// A candidate's position, for choosing.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub timeline: Option<i32>,
    pub received: Option<Lsn>,
    pub replayed: Option<Lsn>,
    /// `[[node]] failover_priority`; 0 = never promoted.
    pub priority: u32,
}

impl Candidate {
    /// From a status row: running replicas only.
    pub fn from_status(cfg: &crate::config::Config, n: &NodeStatus) -> Option<Candidate> {
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

/// Why a `failover_priority = 0` node cannot be the target of a move.
pub fn never_promoted(node: &str) -> String {
    format!("{node} has failover_priority = 0 and is never promoted; raise it in the config to allow this")
}

/// For each other candidate, the bytes of WAL it lacks (None: unknown);
/// negative when it holds WAL the chosen one lacks (it was not eligible).
pub type Gaps = Vec<(String, Option<i64>)>;

/// The most advanced eligible candidate (failover_priority above 0): latest
/// timeline, then highest received LSN (no acknowledged WAL left behind),
/// then the higher failover_priority, then highest replayed LSN (less to
/// replay before it can take writes), then config order. Returns it and,
/// for each other, the bytes it lacks.
pub fn choose(cands: &[Candidate], to: Option<&str>) -> std::result::Result<(Candidate, Gaps), String> {
    let best = match to {
        Some(t) => {
            let c = cands.iter().find(|c| c.name == t).ok_or_else(|| format!("{t} is not a running replica"))?;
            if c.priority == 0 {
                return Err(never_promoted(t));
            }
            c.clone()
        }
        None => cands
            .iter()
            .filter(|c| c.priority > 0)
            .cloned()
            .reduce(|a, b| {
                if (b.timeline, b.received, b.priority, b.replayed) > (a.timeline, a.received, a.priority, a.replayed) {
                    b
                } else {
                    a
                }
            })
            .ok_or_else(|| {
                if cands.is_empty() {
                    "no running replica to promote".to_string()
                } else {
                    "every running replica has failover_priority = 0; none may be promoted".to_string()
                }
            })?,
    };
    let missing = cands
        .iter()
        .filter(|c| c.name != best.name)
        .map(|c| {
            let gap = match (best.received, c.received) {
                (Some(b), Some(o)) if b >= o => Some(b.bytes_since(o).unwrap_or(0) as i64),
                (Some(b), Some(o)) => Some(-(o.bytes_since(b).unwrap_or(0) as i64)),
                _ => None,
            };
            (c.name.clone(), gap)
        })
        .collect();
    Ok((best, missing))
}

/// Run a failover.
/// In the sync modes, only a standby that was synchronous may be promoted
/// (it holds every acknowledged commit), unless `allow_async`.
pub fn sync_filter(ctx: &Ctx, cands: Vec<Candidate>, allow_async: bool) -> std::result::Result<Vec<Candidate>, String> {
    if allow_async || ctx.cfg.replication.durability == crate::domain::modes::Durability::Async {
        return Ok(cands);
    }
    let set = crate::store::state::State::load(&ctx.layout.state_file()).map_err(|e| e.to_string())?.sync_set;
    let sync: Vec<Candidate> = cands.into_iter().filter(|c| set.contains(&c.name)).collect();
    if sync.is_empty() {
        return Err(format!(
            "no running standby was synchronous (last synchronous set: {}); promoting an asynchronous one may lose acknowledged commits. `--allow-data-loss` promotes one anyway",
            if set.is_empty() { "none".to_string() } else { set.join(", ") }
        ));
    }
    Ok(sync)
}

/// Run a failover as `pgrepl failover` asks.
pub async fn run(ctx: &Arc<Ctx>, control: &Control, o: &Options, out: &Output) -> Result<()> {
    run_with(ctx, control, o.to.as_deref(), o.stop_primary.then_some(StopMode::Fast), o.allow_data_loss, None, out)
        .await
}

/// Options of `pgrepl failover`.
#[derive(Debug, Clone, Default)]
pub struct Options {
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
pub async fn run_with(
    ctx: &Arc<Ctx>,
    control: &Control,
    to: Option<&str>,
    fence: Option<StopMode>,
    allow_async: bool,
    known: Option<&crate::observe::status::ClusterStatus>,
    out: &Output,
) -> Result<()> {
    let old = ctx.primary()?.clone();
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
    super::history::record(ctx, "failover", &old, &target).await?;
    write_node_files(ctx, &target, &target.data_dir, Role::Primary, &target)?;
    ensure_slots(ctx, &target).await?;
    let others: Vec<&Node> = ctx.cfg.nodes.iter().filter(|n| n.name != old.name && n.name != target.name).collect();
    for n in &others {
        if datadir::running_postmaster(&n.data_dir).is_some() {
            steps.step(format!("repointing {} to {}", n.name, target.name));
            // The new primary is up either way; a replica that cannot be
            // repointed now (frozen, say) is repointed by the supervisor later.
            if let Err(e) = repoint(ctx, control, n, &target).await {
                steps.say(format!(
                    "warning: repointing {} failed ({e}); the supervisor repoints it when it answers",
                    n.name
                ));
            }
        }
    }
    for n in &others {
        if datadir::running_postmaster(&n.data_dir).is_some() {
            // The new primary is up either way; a replica that does not
            // follow (replay paused, say) is reported, not a failed failover.
            if let Err(e) = crate::ops::wait::wait_streaming(ctx, n, &target).await {
                steps.say(format!("warning: {e}; check it with `pgrepl status`"));
            }
        }
    }
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
    crate::ops::hooks::fire(ctx, "failover", &target.name, &done, out).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, tl: i32, lsn: &str) -> Candidate {
        Candidate {
            name: name.into(),
            timeline: Some(tl),
            received: lsn.parse().ok(),
            replayed: lsn.parse().ok(),
            priority: 1,
        }
    }

    #[test]
    fn equal_reception_goes_to_the_replica_that_replayed_more() {
        let mut paused = c("pg-2", 1, "0/5000000");
        paused.replayed = "0/4000000".parse().ok();
        let (best, _) = choose(&[paused, c("pg-3", 1, "0/5000000")], None).unwrap();
        assert_eq!(best.name, "pg-3");
    }

    #[test]
    fn most_advanced_replica_wins_and_the_others_gap_is_reported() {
        let (best, missing) = choose(&[c("pg-2", 1, "0/5000000"), c("pg-3", 1, "0/5000100")], None).unwrap();
        assert_eq!(best.name, "pg-3");
        assert_eq!(missing, vec![("pg-2".to_string(), Some(0x100))]);
    }

    #[test]
    fn a_later_timeline_beats_a_higher_lsn() {
        let (best, _) = choose(&[c("pg-2", 2, "0/5000000"), c("pg-3", 1, "0/6000000")], None).unwrap();
        assert_eq!(best.name, "pg-2");
    }

    #[test]
    fn explicit_target_must_be_a_running_replica() {
        assert_eq!(choose(&[c("pg-2", 1, "0/1")], Some("pg-9")).unwrap_err(), "pg-9 is not a running replica");
        assert_eq!(choose(&[], None).unwrap_err(), "no running replica to promote");
    }

    #[test]
    fn priority_breaks_ties_and_zero_is_never_promoted() {
        let p = |name: &str, lsn: &str, priority: u32| Candidate { priority, ..c(name, 1, lsn) };
        // Equal WAL: the higher priority wins over config order.
        let (best, _) = choose(&[p("pg-2", "0/5000000", 1), p("pg-3", "0/5000000", 5)], None).unwrap();
        assert_eq!(best.name, "pg-3");
        // More WAL still wins over priority: no acknowledged WAL is left behind.
        let (best, _) = choose(&[p("pg-2", "0/5000100", 1), p("pg-3", "0/5000000", 5)], None).unwrap();
        assert_eq!(best.name, "pg-2");
        // Priority 0 is skipped even when most advanced; what it holds beyond
        // the chosen one is reported as a negative gap.
        let (best, missing) = choose(&[p("pg-2", "0/5000000", 1), p("pg-3", "0/5000100", 0)], None).unwrap();
        assert_eq!(best.name, "pg-2");
        assert_eq!(missing, vec![("pg-3".to_string(), Some(-0x100))]);
        assert!(choose(&[p("pg-3", "0/5", 0)], Some("pg-3")).unwrap_err().contains("failover_priority = 0"));
        assert!(choose(&[p("pg-3", "0/5", 0)], None)
            .unwrap_err()
            .contains("every running replica has failover_priority = 0"));
    }
}
