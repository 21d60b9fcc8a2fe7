//! One node's HA loop: a node decides only for itself, against the leader
//! lease in the store (Patroni's model). Every cycle:
//! - a writable primary renews its lease. If another node holds it, or the
//!   store has not confirmed it for most of a TTL, it demotes itself: it
//!   never keeps taking writes that a new primary's history would discard;
//! - a replica follows the lease holder;
//! - a replica that finds no live lease takes it only if it is the best
//!   candidate it can see (the shared rule in `domain::election`), then
//!   promotes itself. Two that both think so race on the store's
//!   create-if-absent, and one wins.
//!
//! Time comes from a [`Clock`], so tests run lease expiry in no time. The
//! decision returns a [`Step`] and the sentence saying why; the caller acts.
//! The one-machine supervisor still runs the whole-cluster decider
//! ([`super::task`]); this loop is what each host's agent runs over etcd.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::election::{choose, Candidate};
use crate::domain::modes::FailoverMode;
use crate::store::dcs::{Clock, Dcs};

/// What one node knows this cycle: itself, and the replicas that could
/// take over (itself included when it is one), as published by each.
#[derive(Debug, Clone)]
pub(crate) struct MemberFacts {
    pub mode: FailoverMode,
    /// Its postgres answers and takes writes.
    pub writable: bool,
    /// Its postgres answers at all (as a primary or a standby).
    pub running: bool,
    pub candidates: Vec<Candidate>,
    /// `pgrepl pause`: no lease is taken while set (a held one is renewed).
    pub paused: bool,
}

/// What the node does about itself this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// It holds the lease: keep taking writes.
    Lead,
    /// It takes writes without the lease: stop now (fast shutdown, then
    /// rejoin as a standby of whoever leads).
    Demote,
    /// Stream from this leader.
    Follow(String),
    /// It holds the lease and is a standby: promote.
    Promote,
    /// Nothing to change this cycle.
    Wait,
}

/// The loop's memory of one node.
pub(crate) struct Member {
    name: String,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    /// When the last renewal that succeeded was *sent*: the store's lease
    /// runs at least `ttl` from then, whatever the reply's delay.
    renewed_at: Option<Duration>,
}

impl Member {
    pub(crate) fn new(name: &str, ttl: Duration, clock: Arc<dyn Clock>) -> Member {
        Member { name: name.to_string(), ttl, clock, renewed_at: None }
    }

    /// How long a leader that cannot reach the store keeps writing: three
    /// quarters of the TTL, so its demotion finishes before the lease can
    /// expire and another node take it.
    fn self_fence_after(&self) -> Duration {
        self.ttl * 3 / 4
    }

    /// One cycle: the step and the sentence saying why.
    pub(crate) async fn cycle(&mut self, store: &dyn Dcs, f: &MemberFacts) -> (Step, String) {
        let me = self.name.clone();
        if f.writable {
            return self.lead(store).await;
        }
        let leader = match store.leader().await {
            Ok(l) => l,
            Err(e) => {
                return (Step::Wait, format!("{me}: cannot read the leader lease ({e}); no promotion without it"))
            }
        };
        match leader {
            Some(l) if l == me && f.running => {
                (Step::Promote, format!("{me} holds the leader lease but runs as a standby: promoting it"))
            }
            Some(l) if l == me => (
                Step::Wait,
                format!("{me} holds the leader lease and is not running: restarting in place until the lease expires"),
            ),
            Some(l) => (Step::Follow(l.clone()), format!("{me} follows the leader {l}")),
            None => self.elect(store, f).await,
        }
    }

    /// A writable node: renew, or demote itself.
    async fn lead(&mut self, store: &dyn Dcs) -> (Step, String) {
        let me = self.name.clone();
        let sent = self.clock.now();
        // acquire renews for the holder and takes a lease nobody holds.
        match store.acquire(&me, self.ttl).await {
            Ok(true) => {
                self.renewed_at = Some(sent);
                (Step::Lead, format!("{me} is the leader and renewed its lease"))
            }
            Ok(false) => {
                let holder = store.leader().await.ok().flatten().unwrap_or_else(|| "another node".into());
                self.renewed_at = None;
                (Step::Demote, format!("{me} takes writes but {holder} holds the leader lease: demoting {me}"))
            }
            Err(e) => {
                let fence = self.self_fence_after();
                match self.renewed_at.map(|t| self.clock.now().saturating_sub(t)) {
                    Some(age) if age < fence => (
                        Step::Lead,
                        format!(
                            "{me} cannot reach the store ({e}); its lease, renewed {:.1}s ago, still holds: it demotes itself at {:.1}s",
                            age.as_secs_f64(),
                            fence.as_secs_f64()
                        ),
                    ),
                    _ => {
                        self.renewed_at = None;
                        (
                            Step::Demote,
                            format!(
                                "{me} could not renew its leader lease for {:.1}s ({e}): demoting {me} before the lease can pass to another node",
                                fence.as_secs_f64()
                            ),
                        )
                    }
                }
            }
        }
    }

    /// No live lease: take it if this node is the best candidate.
    async fn elect(&mut self, store: &dyn Dcs, f: &MemberFacts) -> (Step, String) {
        let me = self.name.clone();
        if f.mode == FailoverMode::Manual {
            return (
                Step::Wait,
                format!("{me}: no leader, and [failover] mode is manual: waiting for `pgrepl failover`"),
            );
        }
        if f.paused {
            return (Step::Wait, format!("{me}: no leader, and the cluster is paused: no automatic promotion"));
        }
        if !f.running {
            return (Step::Wait, format!("{me}: no leader, and its own postgres is not running"));
        }
        let best = match choose(&f.candidates, None) {
            Ok((best, _)) => best,
            Err(why) => return (Step::Wait, format!("{me}: no leader, and none can be elected: {why}")),
        };
        if best.name != me {
            return (
                Step::Wait,
                format!("{me}: no leader; {} is the most advanced replica and should take over", best.name),
            );
        }
        let sent = self.clock.now();
        match store.acquire(&me, self.ttl).await {
            Ok(true) => {
                self.renewed_at = Some(sent);
                (
                    Step::Promote,
                    format!("no leader: {me} is the most advanced replica and took the lease: promoting {me}"),
                )
            }
            Ok(false) => (Step::Wait, format!("{me}: no leader was seen, but another node took the lease first")),
            Err(e) => (Step::Wait, format!("{me}: cannot take the leader lease ({e})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Result};
    use crate::store::dcs::{BoxFut, FakeClock, InProcess};

    const TTL: Duration = Duration::from_secs(3);

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn cand(name: &str, lsn: &str) -> Candidate {
        Candidate::at(name, lsn)
    }

    fn primary() -> MemberFacts {
        MemberFacts { mode: FailoverMode::Automatic, writable: true, running: true, candidates: vec![], paused: false }
    }

    /// A replica that sees pg-2 ahead of pg-3.
    fn replica() -> MemberFacts {
        MemberFacts {
            writable: false,
            candidates: vec![cand("pg-2", "0/5000100"), cand("pg-3", "0/5000000")],
            ..primary()
        }
    }

    #[test]
    fn primary_lease_lost_then_the_best_replica_takes_over_and_the_old_primary_demotes_itself() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let [mut p1, mut p2, mut p3] = ["pg-1", "pg-2", "pg-3"].map(|n| Member::new(n, TTL, clock.clone()));
        block(async {
            assert_eq!(
                p1.cycle(&store, &primary()).await,
                (Step::Lead, "pg-1 is the leader and renewed its lease".into())
            );
            assert_eq!(p2.cycle(&store, &replica()).await.0, Step::Follow("pg-1".into()));
            clock.advance(Duration::from_secs(2));
            assert_eq!(p1.cycle(&store, &primary()).await.0, Step::Lead);
            clock.advance(Duration::from_secs(2));
            assert_eq!(
                p3.cycle(&store, &replica()).await,
                (Step::Follow("pg-1".into()), "pg-3 follows the leader pg-1".into())
            );

            // pg-1 is cut off: it renews no more, and its lease runs out.
            clock.advance(Duration::from_millis(1500));
            assert_eq!(
                p3.cycle(&store, &replica()).await,
                (Step::Wait, "pg-3: no leader; pg-2 is the most advanced replica and should take over".into())
            );
            assert_eq!(
                p2.cycle(&store, &replica()).await,
                (
                    Step::Promote,
                    "no leader: pg-2 is the most advanced replica and took the lease: promoting pg-2".into()
                )
            );
            // Still a standby next cycle (promotion under way): finish it.
            assert_eq!(
                p2.cycle(&store, &replica()).await,
                (Step::Promote, "pg-2 holds the leader lease but runs as a standby: promoting it".into())
            );
            assert_eq!(p3.cycle(&store, &replica()).await.0, Step::Follow("pg-2".into()));

            // pg-1 comes back still taking writes: it must stop.
            assert_eq!(
                p1.cycle(&store, &primary()).await,
                (Step::Demote, "pg-1 takes writes but pg-2 holds the leader lease: demoting pg-1".into())
            );
            // The new leader renews; the old one, now a standby, follows it.
            assert_eq!(p2.cycle(&store, &primary()).await.0, Step::Lead);
            assert_eq!(p1.cycle(&store, &replica()).await.0, Step::Follow("pg-2".into()));
        });
    }

    /// A store that has stopped answering (partitioned from its quorum).
    struct Unreachable;

    impl Dcs for Unreachable {
        fn acquire<'a>(&'a self, _: &'a str, _: Duration) -> BoxFut<'a, Result<bool>> {
            Box::pin(async { Err(Error::Other("store unreachable".into())) })
        }
        fn renew<'a>(&'a self, _: &'a str, _: Duration) -> BoxFut<'a, Result<bool>> {
            Box::pin(async { Err(Error::Other("store unreachable".into())) })
        }
        fn release<'a>(&'a self, _: &'a str) -> BoxFut<'a, Result<()>> {
            Box::pin(async { Err(Error::Other("store unreachable".into())) })
        }
        fn leader(&self) -> BoxFut<'_, Result<Option<String>>> {
            Box::pin(async { Err(Error::Other("store unreachable".into())) })
        }
    }

    #[test]
    fn a_leader_cut_off_from_the_store_demotes_itself_before_its_lease_can_expire() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let mut p1 = Member::new("pg-1", TTL, clock.clone());
        block(async {
            assert_eq!(p1.cycle(&store, &primary()).await.0, Step::Lead);
            clock.advance(Duration::from_secs(1));
            let (step, why) = p1.cycle(&Unreachable, &primary()).await;
            assert_eq!(step, Step::Lead, "{why}");
            assert!(why.contains("renewed 1.0s ago, still holds: it demotes itself at 2.2s"), "{why}");
            clock.advance(Duration::from_millis(1300));
            let (step, why) = p1.cycle(&Unreachable, &primary()).await;
            assert_eq!(step, Step::Demote, "{why}");
            // Before the lease it renewed could pass to anyone.
            assert_eq!(store.leader().await.unwrap().as_deref(), Some("pg-1"));
            // A replica cut off from the store never promotes.
            let mut p2 = Member::new("pg-2", TTL, clock.clone());
            assert_eq!(p2.cycle(&Unreachable, &replica()).await.0, Step::Wait);
        });
    }

    #[test]
    fn two_replicas_that_each_think_they_are_best_race_and_one_wins() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let (mut p2, mut p3) = (Member::new("pg-2", TTL, clock.clone()), Member::new("pg-3", TTL, clock.clone()));
        // Each saw a stale position of the other.
        let sees = |ahead: &str| MemberFacts {
            candidates: vec![
                cand(ahead, "0/6000000"),
                cand(if ahead == "pg-2" { "pg-3" } else { "pg-2" }, "0/5000000"),
            ],
            ..replica()
        };
        block(async {
            assert_eq!(p2.cycle(&store, &sees("pg-2")).await.0, Step::Promote);
            assert_eq!(
                p3.cycle(&store, &sees("pg-3")).await,
                (Step::Follow("pg-2".into()), "pg-3 follows the leader pg-2".into())
            );
        });
    }

    #[test]
    fn no_promotion_in_manual_mode_while_paused_or_when_not_running() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let mut p2 = Member::new("pg-2", TTL, clock.clone());
        block(async {
            for (f, why) in [
                (MemberFacts { mode: FailoverMode::Manual, ..replica() }, "mode is manual"),
                (MemberFacts { paused: true, ..replica() }, "paused"),
                (MemberFacts { running: false, ..replica() }, "not running"),
            ] {
                let (step, said) = p2.cycle(&store, &f).await;
                assert_eq!(step, Step::Wait);
                assert!(said.contains(why), "{said}");
            }
            assert_eq!(store.leader().await.unwrap(), None, "no lease was taken");
        });
    }
}
