//! High availability. On one machine: the decision, and the task that acts
//! on it ([`task`]); across hosts, one loop per node against etcd
//! ([`hosted`]). The decision is a pure function from [`Facts`] to an
//! [`Action`] plus the sentence saying why; the task gathers the facts from the
//! monitor's snapshot and the leader lease ([`crate::store::dcs`]), logs the
//! sentence when it changes, shows it in `status`, and carries the action out.

mod actions;
mod handover;
pub(crate) mod hosted;
pub(crate) mod member;
pub(crate) mod pause;
pub(crate) mod task;

use std::time::Duration;

use crate::domain::election::{choose, Candidate};
pub(crate) use crate::domain::modes::FailoverMode as Mode;

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub mode: Mode,
    /// The node that is primary by runtime state.
    pub primary: String,
    pub primary_writable: bool,
    /// How long the primary has not accepted writes (None while it does).
    pub down_for: Option<Duration>,
    pub primary_start_timeout: Duration,
    /// The holder of the live leader lease, after this cycle's renewal.
    pub leader: Option<String>,
    /// Running replicas.
    pub candidates: Vec<Candidate>,
    /// Former primaries fenced by a failover, waiting to rejoin.
    pub fenced: Vec<String>,
    /// Automatic rejoin is on and its retry interval has passed.
    pub rejoin_due: bool,
    /// A switchover/failover/rejoin command holds the move lock.
    pub move_in_progress: bool,
    /// Configured standbys whose slot on the primary was lost (not yet
    /// marked needs-reclone); `true` when the user stopped the node.
    pub lost: Vec<(String, bool)>,
    /// `[replication] auto_reclone`.
    pub auto_reclone: bool,
    /// Standbys this supervisor re-cloned by itself within [`RECLONE_QUIET`].
    pub recently_recloned: Vec<String>,
    /// A WAL archive is configured: a standby can catch up without its old slot.
    pub archive: bool,
    /// `pgrepl pause`: since when (and why). No automatic action while set.
    pub paused: Option<String>,
    /// The recorded primary answers, but as a standby: a move recorded it
    /// and was interrupted before (or while) promoting it.
    pub primary_in_recovery: bool,
    /// Other nodes observed as writable primaries.
    pub others_writable: Vec<String>,
    /// Running standbys that follow something other than the primary, with
    /// what they follow.
    pub misfollowing: Vec<(String, String)>,
    /// Nodes a move stopped and did not start again (it was interrupted);
    /// nodes the user stopped are not listed.
    pub interrupted: Vec<String>,
    /// Standbys holding slots pgrepl made (left from when they were primary).
    pub stale_slots: Vec<String>,
    /// Standbys (not stopped by the user) with no data dir: an interrupted
    /// clone, or a dir that was removed. Like Patroni with an empty data
    /// dir, they are cloned again; nothing is overwritten.
    pub no_data: Vec<String>,
}

/// A standby whose slot is lost again this soon after an automatic re-clone
/// is not re-cloned again: it cannot keep up within max_slot_wal_keep_size,
/// and another copy would only repeat the churn.
pub(crate) const RECLONE_QUIET: Duration = Duration::from_secs(600);

/// What to do this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    /// The primary is down but its lease is live: the supervisor is
    /// restarting it in place (crash recovery).
    WaitForRestart,
    /// Fence the old primary and promote this replica.
    Failover {
        to: String,
    },
    /// pg_rewind a fenced former primary and start it as a standby.
    Rejoin {
        node: String,
    },
    /// Drop the lost slot and make a new one: the standby catches up from the archive.
    RecreateSlot {
        node: String,
    },
    /// Re-clone the standby (auto_reclone).
    Reclone {
        node: String,
    },
    /// Report the standby as needs-reclone and keep it stopped.
    MarkNeedsReclone {
        node: String,
    },
    /// Promote the recorded primary, which runs as a standby: finish an
    /// interrupted move.
    FinishPromotion {
        node: String,
    },
    /// Point a standby at the primary (and the primary's slots at its standbys).
    Repoint {
        node: String,
        from: String,
    },
    /// Start a node an interrupted move left stopped (as a standby, through
    /// the start gate).
    StartStopped {
        node: String,
    },
    /// Drop the slots a standby kept from when it was primary.
    DropStaleSlots {
        node: String,
    },
    /// Stop a node that takes writes beside the recorded primary (promoted
    /// by hand, say), fenced: it rejoins as a standby.
    Demote {
        node: String,
    },
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("?".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// Decide. The second value is the sentence logged and shown in `status`.
pub(crate) fn decide(f: &Facts) -> (Action, String) {
    if f.move_in_progress {
        return (Action::Nothing, "a move command is running; automatic failover waits for it".into());
    }
    if let Some(since) = &f.paused {
        let what = if f.primary_writable {
            format!("primary {} is writable", f.primary)
        } else {
            format!(
                "primary {} is not accepting writes ({}); nothing is done by itself, run `pgrepl failover` to move it by hand",
                f.primary,
                secs(f.down_for)
            )
        };
        return (Action::Nothing, format!("paused {since} (`pgrepl resume` ends it): {what}"));
    }
    if f.primary_writable {
        if let Some(node) = f.others_writable.first() {
            let node = node.clone();
            // The record and the lease say who the primary is; a second
            // writable node (`pg_promote()` by hand) is what "never two
            // primaries" forbids, so it goes, as a Patroni member without
            // the leader key demotes itself. Its writes of its own are on a
            // timeline nobody follows; the rewind discards them.
            return if f.leader.as_deref() == Some(f.primary.as_str()) {
                let why = format!("{node} takes writes but the recorded primary {} holds the leader lease: stopping {node}; it rejoins as a standby of {} (the writes it took alone are discarded)", f.primary, f.primary);
                (Action::Demote { node }, why)
            } else {
                let why = format!("{} and {node} both take writes and the leader lease is not {}'s: not acting on two primaries; check `pgrepl status` and `pgrepl history`", f.primary, f.primary);
                (Action::Nothing, why)
            };
        }
        if let Some((node, stopped)) = f.lost.first() {
            let node = node.clone();
            return if f.archive {
                let why =
                    format!("the slot of {node} was lost; recreating it so {node} catches up from the WAL archive");
                (Action::RecreateSlot { node }, why)
            } else if f.auto_reclone && f.recently_recloned.contains(&node) {
                let why = format!("the slot of {node} was lost again within {} min of its automatic re-clone: {node} cannot keep up within max_slot_wal_keep_size; it stays stopped, needing a re-clone. Raise max_slot_wal_keep_size or find what slows {node}, then run `pgrepl reclone {node}`", RECLONE_QUIET.as_secs() / 60);
                (Action::MarkNeedsReclone { node }, why)
            } else if f.auto_reclone {
                let how = if *stopped { "; it stays stopped until `pgrepl up`" } else { "" };
                let why = format!("the slot of {node} was lost and the WAL it needs is gone; re-cloning {node} (auto_reclone = true){how}");
                (Action::Reclone { node }, why)
            } else {
                let why = format!("the slot of {node} was lost and the WAL it needs is gone: {node} needs a re-clone, run `pgrepl reclone {node}`");
                (Action::MarkNeedsReclone { node }, why)
            };
        }
        if let Some(node) = f.no_data.first() {
            return (
                Action::Reclone { node: node.clone() },
                format!(
                    "{node} has no data dir (an interrupted clone, or it was removed); cloning it from {}",
                    f.primary
                ),
            );
        }
        if let Some((node, from)) = f.misfollowing.first() {
            return (
                Action::Repoint { node: node.clone(), from: from.clone() },
                format!("{node} follows {from}, not the primary {}; repointing it", f.primary),
            );
        }
        if let Some(node) = f.interrupted.first() {
            return (
                Action::StartStopped { node: node.clone() },
                format!("{node} was stopped by a move that did not finish; starting it as a standby of {}", f.primary),
            );
        }
        if let Some(node) = f.stale_slots.first() {
            return (
                Action::DropStaleSlots { node: node.clone() },
                format!("standby {node} keeps replication slots from when it was primary; dropping them"),
            );
        }
        if let (Some(node), true) = (f.fenced.first(), f.rejoin_due) {
            return (
                Action::Rejoin { node: node.clone() },
                format!("primary {} is writable; rejoining former primary {node} as its standby", f.primary),
            );
        }
        let waiting =
            if f.fenced.is_empty() { String::new() } else { format!("; {} waits to rejoin", f.fenced.join(", ")) };
        return (Action::Nothing, format!("primary {} is writable and holds the leader lease{waiting}", f.primary));
    }
    if !f.others_writable.is_empty() {
        // Never add a promotion to a node that is already writable elsewhere.
        return (
            Action::Nothing,
            format!(
                "the recorded primary {} is not writable but {} is: not acting on two primaries; check `pgrepl status` and `pgrepl history`",
                f.primary,
                f.others_writable.join(", ")
            ),
        );
    }
    if f.primary_in_recovery {
        // Not an automatic failover: the move that recorded this node as
        // primary was cut short, and finishing it is the only way to one primary.
        return (
            Action::FinishPromotion { node: f.primary.clone() },
            format!("{} is the recorded primary but runs as a standby (an interrupted move); promoting it", f.primary),
        );
    }
    if f.mode == Mode::Manual {
        return (
            Action::Nothing,
            format!(
                "primary {} is not accepting writes ({}); automatic failover is off: run `pgrepl failover`",
                f.primary,
                secs(f.down_for)
            ),
        );
    }
    if f.leader.as_deref() == Some(f.primary.as_str()) {
        return (
            Action::WaitForRestart,
            format!(
                "primary {} is not accepting writes for {}; restarting it in place, failover if it is not back within {}s",
                f.primary,
                secs(f.down_for),
                f.primary_start_timeout.as_secs()
            ),
        );
    }
    match choose(&f.candidates, None) {
        Ok((best, _)) => (
            Action::Failover { to: best.name.clone() },
            format!(
                "primary {} is not accepting writes for {} and its lease expired; promoting {}, the most advanced replica (received {})",
                f.primary,
                secs(f.down_for),
                best.name,
                best.received.map_or("?".into(), |l| l.to_string())
            ),
        ),
        Err(why) => (Action::Nothing, format!("primary {} is down and cannot be replaced: {why}", f.primary)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, lsn: &str) -> Candidate {
        Candidate::at(name, lsn)
    }

    fn facts() -> Facts {
        Facts {
            mode: Mode::Automatic,
            primary: "pg-1".into(),
            primary_writable: true,
            down_for: None,
            primary_start_timeout: Duration::from_secs(10),
            leader: Some("pg-1".into()),
            candidates: vec![cand("pg-2", "0/5000000"), cand("pg-3", "0/5000100")],
            fenced: vec![],
            rejoin_due: false,
            move_in_progress: false,
            lost: vec![],
            auto_reclone: false,
            recently_recloned: vec![],
            archive: false,
            paused: None,
            primary_in_recovery: false,
            others_writable: vec![],
            misfollowing: vec![],
            interrupted: vec![],
            stale_slots: vec![],
            no_data: vec![],
        }
    }

    #[test]
    fn a_second_writable_node_beside_the_lease_holding_primary_is_demoted() {
        let f = Facts { primary_writable: true, others_writable: vec!["pg-3".into()], ..facts() };
        let (action, why) = decide(&f);
        assert_eq!(action, Action::Demote { node: "pg-3".into() });
        assert!(why.starts_with("pg-3 takes writes but the recorded primary pg-1 holds the leader lease"), "{why}");
        // Without the lease nothing says which one is the primary.
        let unsure = Facts { leader: None, ..f.clone() };
        assert_eq!(decide(&unsure).0, Action::Nothing);
        assert!(decide(&unsure).1.contains("not acting on two primaries"), "{}", decide(&unsure).1);
        // Paused: reported, left alone, as Patroni's maintenance mode does.
        assert_eq!(decide(&Facts { paused: Some("since now".into()), ..f }).0, Action::Nothing);
    }

    #[test]
    fn a_standby_without_data_is_cloned_again_unless_paused() {
        let f = Facts { no_data: vec!["pg-2".into()], ..facts() };
        assert_eq!(
            decide(&f),
            (
                Action::Reclone { node: "pg-2".into() },
                "pg-2 has no data dir (an interrupted clone, or it was removed); cloning it from pg-1".into()
            )
        );
        assert_eq!(decide(&Facts { paused: Some("since now".into()), ..f }).0, Action::Nothing);
    }

    #[test]
    fn an_interrupted_move_is_finished_in_every_mode_unless_a_primary_exists() {
        for mode in [Mode::Automatic, Mode::Manual] {
            let f = Facts {
                mode,
                primary: "pg-3".into(),
                primary_writable: false,
                primary_in_recovery: true,
                down_for: Some(Duration::from_secs(1)),
                ..facts()
            };
            assert_eq!(
                decide(&f),
                (
                    Action::FinishPromotion { node: "pg-3".into() },
                    "pg-3 is the recorded primary but runs as a standby (an interrupted move); promoting it".into()
                )
            );
            let two = Facts { others_writable: vec!["pg-1".into()], ..f };
            assert_eq!(decide(&two).0, Action::Nothing);
            assert!(decide(&two).1.contains("not acting on two primaries"), "{}", decide(&two).1);
        }
    }

    #[test]
    fn a_standby_following_the_wrong_node_is_repointed_then_stopped_ones_started() {
        let f = Facts {
            misfollowing: vec![("pg-2".into(), "pg-1".into())],
            interrupted: vec!["pg-1".into()],
            primary: "pg-3".into(),
            ..facts()
        };
        assert_eq!(
            decide(&f),
            (
                Action::Repoint { node: "pg-2".into(), from: "pg-1".into() },
                "pg-2 follows pg-1, not the primary pg-3; repointing it".into()
            )
        );
        let f = Facts { misfollowing: vec![], ..f };
        assert_eq!(
            decide(&f),
            (
                Action::StartStopped { node: "pg-1".into() },
                "pg-1 was stopped by a move that did not finish; starting it as a standby of pg-3".into()
            )
        );
        // Paused: nothing by itself.
        let f = Facts { paused: Some("since now".into()), ..f };
        assert_eq!(decide(&f).0, Action::Nothing);
    }

    #[test]
    fn paused_does_nothing_by_itself_and_says_how_to_act() {
        let paused = Some("since 2026-11-22T10:00:00Z: upgrading pg-1".to_string());
        // A dead primary past its lease would be failed over; paused, it is not.
        let down = Facts {
            primary_writable: false,
            down_for: Some(Duration::from_secs(30)),
            leader: None,
            paused: paused.clone(),
            ..facts()
        };
        let (a, why) = decide(&down);
        assert_eq!(a, Action::Nothing);
        assert_eq!(
            why,
            "paused since 2026-11-22T10:00:00Z: upgrading pg-1 (`pgrepl resume` ends it): primary pg-1 is not accepting writes (30.0s); nothing is done by itself, run `pgrepl failover` to move it by hand"
        );
        // Nor are a lost slot or a fenced node acted on.
        let busy = Facts {
            lost: vec![("pg-2".into(), false)],
            auto_reclone: true,
            fenced: vec!["pg-3".into()],
            rejoin_due: true,
            paused,
            ..facts()
        };
        assert_eq!(decide(&busy).0, Action::Nothing);
        assert_eq!(decide(&Facts { paused: None, ..busy }).0, Action::Reclone { node: "pg-2".into() });
    }

    #[test]
    fn lost_slot_is_recreated_with_an_archive_recloned_when_allowed_else_reported() {
        let lost = Facts { lost: vec![("pg-2".into(), false)], ..facts() };
        assert_eq!(decide(&Facts { archive: true, ..lost.clone() }).0, Action::RecreateSlot { node: "pg-2".into() });
        assert_eq!(decide(&Facts { auto_reclone: true, ..lost.clone() }).0, Action::Reclone { node: "pg-2".into() });
        // Lost again soon after an automatic re-clone: no second copy.
        let again = Facts { auto_reclone: true, recently_recloned: vec!["pg-2".into()], ..lost.clone() };
        let (a, why) = decide(&again);
        assert_eq!(a, Action::MarkNeedsReclone { node: "pg-2".into() });
        assert!(why.starts_with("the slot of pg-2 was lost again within 10 min of its automatic re-clone"), "{why}");
        let (a, why) = decide(&lost);
        assert_eq!(a, Action::MarkNeedsReclone { node: "pg-2".into() });
        assert_eq!(
            why,
            "the slot of pg-2 was lost and the WAL it needs is gone: pg-2 needs a re-clone, run `pgrepl reclone pg-2`"
        );
    }

    #[test]
    fn healthy_primary_means_nothing_to_do() {
        assert_eq!(decide(&facts()), (Action::Nothing, "primary pg-1 is writable and holds the leader lease".into()));
    }

    #[test]
    fn primary_killed_within_its_lease_is_restarted_in_place() {
        let f = Facts { primary_writable: false, down_for: Some(Duration::from_millis(3200)), ..facts() };
        let (a, why) = decide(&f);
        assert_eq!(a, Action::WaitForRestart);
        assert_eq!(why, "primary pg-1 is not accepting writes for 3.2s; restarting it in place, failover if it is not back within 10s");
    }

    #[test]
    fn primary_killed_past_its_lease_promotes_the_most_advanced_replica() {
        let f =
            Facts { primary_writable: false, down_for: Some(Duration::from_millis(10100)), leader: None, ..facts() };
        let (a, why) = decide(&f);
        assert_eq!(a, Action::Failover { to: "pg-3".into() });
        assert_eq!(why, "primary pg-1 is not accepting writes for 10.1s and its lease expired; promoting pg-3, the most advanced replica (received 0/5000100)");
    }

    #[test]
    fn manual_mode_only_says_what_to_run() {
        let f = Facts {
            mode: Mode::Manual,
            primary_writable: false,
            down_for: Some(Duration::from_secs(30)),
            leader: None,
            ..facts()
        };
        let (a, why) = decide(&f);
        assert_eq!(a, Action::Nothing);
        assert!(why.ends_with("automatic failover is off: run `pgrepl failover`"), "{why}");
    }

    #[test]
    fn no_replica_no_failover() {
        let f = Facts {
            primary_writable: false,
            down_for: Some(Duration::from_secs(30)),
            leader: None,
            candidates: vec![],
            ..facts()
        };
        assert_eq!(
            decide(&f),
            (Action::Nothing, "primary pg-1 is down and cannot be replaced: no running replica to promote".into())
        );
    }

    #[test]
    fn fenced_former_primary_rejoins_when_due_and_waits_otherwise() {
        let f = Facts { fenced: vec!["pg-1".into()], primary: "pg-3".into(), leader: Some("pg-3".into()), ..facts() };
        assert_eq!(decide(&f).1, "primary pg-3 is writable and holds the leader lease; pg-1 waits to rejoin");
        let f = Facts { rejoin_due: true, ..f };
        assert_eq!(decide(&f).0, Action::Rejoin { node: "pg-1".into() });
    }

    #[test]
    fn a_running_move_command_is_not_interfered_with() {
        let f = Facts { primary_writable: false, leader: None, move_in_progress: true, ..facts() };
        assert_eq!(decide(&f).0, Action::Nothing);
    }
}
