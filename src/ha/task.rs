//! The HA task inside the supervisor: on every monitor snapshot it renews
//! the leader lease for a writable primary, gathers the [`Facts`], decides,
//! logs the decision's sentence when it changes (and writes it where
//! `status` shows it), and carries the action out under the move lock.

use std::sync::Arc;
use std::time::Instant;

use super::{decide, Action, Facts};
use crate::control::{move_lock, Control};
use crate::ctx::Ctx;
use crate::dcs::Dcs;
use crate::moves::failover::Candidate;
use crate::snapshot::Latest;
use crate::state::State;
use crate::supervise::{Output, Supervisor};

/// The wait after `failures` failed rejoins in a row.
fn rejoin_backoff(interval: std::time::Duration, failures: u32) -> std::time::Duration {
    (interval * 2u32.saturating_pow(failures.min(16))).min(std::time::Duration::from_secs(300))
}

/// A sentence without its numbers: what the log compares.
fn gist(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Start the HA task.
pub fn spawn(ctx: Arc<Ctx>, sup: Supervisor, mut latest: Latest, dcs: Arc<dyn Dcs>, out: Output) {
    tokio::spawn(async move {
        let ttl = ctx.cfg.failover.primary_start_timeout;
        let mut down_since: Option<(String, Instant)> = None;
        let mut last_reason = String::new();
        let mut next_rejoin = Instant::now();
        // Failed rejoins back off (rejoin_interval doubling, at most 5 min):
        // a cause that needs a person (missing pg_rewind, a broken dir) should
        // not fill the log every few seconds.
        let mut rejoin_failures = 0u32;
        let mut recloned_at: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
        // A snapshot taken before the last action finished may still show
        // what that action fixed (a lost slot): never act on it twice.
        let mut acted_at = 0.0f64;
        while latest.changed().await.is_ok() {
            let Some(snap) = latest.borrow_and_update().clone() else { continue };
            let primary = ctx.current_primary().clone();
            let writable = snap.status.nodes.iter().any(|n| n.name == primary.name && n.is_writable_primary());
            if writable {
                down_since = None;
                // acquire renews for the holder and takes a free lease.
                let _ = dcs.acquire(&primary.name, ttl).await;
            } else if down_since.as_ref().is_none_or(|(n, _)| *n != primary.name) {
                down_since = Some((primary.name.clone(), Instant::now()));
            }
            let state = State::load(&ctx.layout.state_file()).unwrap_or_default();
            let lock = move_lock(&ctx);
            let facts = Facts {
                mode: ctx.cfg.failover.mode,
                primary: primary.name.clone(),
                primary_writable: writable,
                down_for: down_since.as_ref().map(|(_, t)| t.elapsed()),
                primary_start_timeout: ttl,
                leader: dcs.leader().await.ok().flatten(),
                // In the sync modes only a synchronous standby may be promoted.
                candidates: crate::moves::failover::sync_filter(
                    &ctx,
                    snap.status
                        .nodes
                        .iter()
                        .filter(|n| n.name != primary.name)
                        .filter_map(|n| Candidate::from_status(&ctx.cfg, n))
                        .collect(),
                    false,
                )
                .unwrap_or_default(),
                fenced: state.fenced.clone(),
                rejoin_due: ctx.cfg.failover.auto_rejoin
                    && ctx.cfg.failover.mode == super::Mode::Automatic
                    && Instant::now() >= next_rejoin,
                move_in_progress: lock.is_err(),
                lost: snap
                    .status
                    .slots
                    .iter()
                    .filter(|_| snap.taken_unix > acted_at)
                    .filter(|s| s.wal_status.as_deref() == Some("lost"))
                    .filter_map(|s| {
                        ctx.cfg
                            .nodes
                            .iter()
                            .find(|n| n.name != primary.name && crate::config::slot_name(&n.name) == s.slot)
                    })
                    .filter(|n| !state.needs_reclone.contains(&n.name))
                    .map(|n| (n.name.clone(), ctx.layout.stop_marker(&n.name).exists()))
                    .collect(),
                auto_reclone: ctx.cfg.replication.auto_reclone,
                recently_recloned: recloned_at
                    .iter()
                    .filter(|(_, t)| t.elapsed() < super::RECLONE_QUIET)
                    .map(|(n, _)| n.clone())
                    .collect(),
                archive: ctx.cfg.archive.is_some(),
                paused: state.paused.clone(),
            };
            let (action, reason) = decide(&facts);
            let acted = !matches!(action, Action::Nothing | Action::WaitForRestart);
            // `status` shows every sentence; the log only a change of gist
            // (sentences count seconds, which would log every cycle).
            if reason != last_reason {
                if gist(&reason) != gist(&last_reason) {
                    out.info(format!("ha: {reason}"));
                }
                let _ = crate::fsutil::write_atomic(&ctx.layout.ha_file(), reason.as_bytes(), 0o644);
                last_reason = reason;
            }
            let control = Control::InProcess(sup.clone());
            match action {
                Action::Nothing | Action::WaitForRestart => {}
                Action::Failover { to } => {
                    // Take the lease for the new primary first: the store, not this
                    // loop's opinion, decides who may be primary.
                    if !dcs.acquire(&to, ttl).await.unwrap_or(false) {
                        continue;
                    }
                    if let Err(e) = crate::moves::failover::run_with(
                        &ctx,
                        &control,
                        Some(&to),
                        // It has not accepted writes for primary_start_timeout:
                        // if it still runs it is frozen or hung, and must not
                        // be able to wake up writable.
                        Some(crate::pg::process::StopMode::Kill),
                        false,
                        &out,
                    )
                    .await
                    {
                        out.info(format!("ha: automatic failover to {to} failed: {e}"));
                        let _ = dcs.release(&to).await;
                    }
                    down_since = None;
                }
                Action::RecreateSlot { .. } => {
                    if let Err(e) = crate::moves::ensure_slots(&ctx, &primary).await {
                        out.info(format!("ha: recreating a lost slot failed: {e}"));
                    }
                }
                Action::MarkNeedsReclone { node } => {
                    if let Ok(n) = ctx.cfg.node(&node) {
                        let _ = crate::moves::set_needs_reclone(&ctx, n, true);
                        crate::hooks::fire(&ctx, "needs_reclone", &node, &last_reason, &out).await;
                        // It cannot stream any more; keep it from spinning.
                        let _ = control.stop(&ctx, n, crate::pg::process::StopMode::Fast).await;
                    }
                }
                Action::Reclone { node } => {
                    recloned_at.insert(node.clone(), Instant::now());
                    let start = !ctx.layout.stop_marker(&node).exists();
                    if let Err(e) = crate::moves::rejoin::reclone(&ctx, &control, &node, false, start, &out).await {
                        out.info(format!("ha: re-cloning {node} failed: {e}"));
                    }
                }
                Action::Rejoin { node } => match crate::moves::rejoin::rejoin(&ctx, &control, &node, &out).await {
                    Ok(()) => {
                        rejoin_failures = 0;
                        next_rejoin = Instant::now() + ctx.cfg.failover.rejoin_interval;
                    }
                    Err(e) => {
                        let wait = rejoin_backoff(ctx.cfg.failover.rejoin_interval, rejoin_failures);
                        rejoin_failures += 1;
                        next_rejoin = Instant::now() + wait;
                        out.info(format!(
                            "ha: rejoining {node} failed, retrying in {}s: {}",
                            wait.as_secs(),
                            e.to_string().lines().next().unwrap_or("")
                        ));
                    }
                },
            }
            if acted {
                acted_at = crate::status::now_unix();
            }
            drop(lock);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failed_rejoins_back_off_to_five_minutes() {
        let i = Duration::from_secs(5);
        let waits: Vec<u64> = (0..8).map(|f| rejoin_backoff(i, f).as_secs()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(rejoin_backoff(i, 1000), Duration::from_secs(300));
    }

    #[test]
    fn the_log_compares_sentences_without_their_numbers() {
        assert_eq!(gist("down for 3.2s"), gist("down for 10.7s"));
        assert_ne!(gist("down for 3.2s"), gist("up for 3.2s"));
    }
}
