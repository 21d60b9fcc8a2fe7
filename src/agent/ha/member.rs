//! One node's HA loop: a node decides only for itself, against the leader
//! lease in the store (Patroni's model). Every cycle:
//! - a writable primary renews its lease. If another node holds it, it
//!   demotes itself. If the store has not confirmed the lease by its
//!   deadline (see [`Member::deadline`]) it is frozen, and thawed only by a
//!   renewal that succeeds: it never keeps taking writes that a new
//!   primary's history would discard;
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
    /// Its postgres runs here as a primary: the postmaster is up and its
    /// files say primary (no standby.signal), whether or not it answers
    /// yet. A leader renews while this holds, so a slow start or a busy
    /// probe never lets the lease lapse under a primary that runs.
    pub writable: bool,
    /// Its postmaster is up (as a primary or a standby).
    pub running: bool,
    /// The cluster's record names it as the primary (before the first
    /// bootstrap: the config's bootstrap primary).
    pub recorded_primary: bool,
    /// How long a recorded primary that is down may hold the lease while
    /// it starts again in place (`[failover] primary_start_timeout`).
    pub start_window: Duration,
    pub candidates: Vec<Candidate>,
    /// `pgrepl pause`: no lease is taken while set (a held one is renewed).
    pub paused: bool,
    /// Other nodes that answer as writable primaries: while one does, no
    /// replica promotes (the backstop against a lease that ended early).
    pub others_writable: Vec<String>,
    /// Its postgres was frozen at the lease deadline and is still frozen.
    pub frozen: bool,
    /// A move in which the leader gives up its key (a switchover handed
    /// over, a failover asked for): the target takes it, the others wait,
    /// and the old leader does not take it back while it is stopped.
    pub handover: Option<Handover>,
    /// How long its running postgres has answered no probe (hung, stopped
    /// by a signal, stuck on I/O); None while it answers.
    pub hung: Option<Duration>,
    /// It stopped its postgres for a switchover to this node and waits
    /// for it to replay the last WAL: stopped on purpose, not starting.
    pub stopped_for: Option<String>,
}

/// Who gives up the lead, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handover {
    pub from: String,
    /// None: the best candidate, elected as usual, even in manual mode or
    /// while paused (a person asked for it).
    pub to: Option<String>,
}

/// What the node does about itself this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// It holds the lease: keep taking writes.
    Lead,
    /// It takes writes without the lease: stop now (kill, then rejoin as a
    /// standby of whoever leads).
    Demote,
    /// Its lease was not confirmed by the deadline: freeze its postgres
    /// (SIGSTOP) until a renewal succeeds or the lease is known lost.
    Freeze,
    /// Its postgres has hung for longer than the start window: kill it (a
    /// killed process cannot wake up writable) and renew nothing for it;
    /// it then restarts in place within the window, or the lease lapses.
    Kill,
    /// Frozen, and the lease is ours again: let it run.
    Thaw,
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
    /// When this loop started, and whether it has seen any leader since: a
    /// replica that never saw one gives the primary's agent two TTLs to
    /// take the lease first (a whole cluster starting at once).
    started: Duration,
    seen_leader: bool,
    /// Since when its recorded primary has been down here.
    down_since: Option<Duration>,
}

impl Member {
    pub(crate) fn new(name: &str, ttl: Duration, clock: Arc<dyn Clock>) -> Member {
        let started = clock.now();
        Member { name: name.to_string(), ttl, clock, renewed_at: None, started, seen_leader: false, down_since: None }
    }

    /// The safety margin m between a leader's deadline and the earliest
    /// moment its lease can expire: 1 s, or a third of a short TTL.
    fn margin(&self) -> Duration {
        Duration::from_secs(1).min(self.ttl / 3)
    }

    /// How long after a renewal was *sent* a leader may keep writing:
    /// d = s + L - m.
    ///
    /// Why that is safe: etcd starts the lease's TTL when it processes the
    /// keepalive, which is after we sent it (time s on our monotonic clock),
    /// so the lease ends no earlier than s + L on etcd's clock; an etcd
    /// leader change only extends leases. Clocks run at slightly different
    /// rates (NTP bounds the error to 500 ppm: 1.5 ms over a 3 s TTL), so the
    /// margin m is almost entirely for scheduling: this process must freeze
    /// its postgres by d, and m = 1 s leaves that much room. No other node
    /// can hold the lease before s + L, so no two writable primaries overlap.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.renewed_at.map(|s| s + self.ttl - self.margin())
    }

    /// Take the lease, or renew it if we hold it (`acquire` does both).
    /// A success is recorded as of when the call was *sent*: the store's
    /// lease runs at least `ttl` from then, whatever the reply's delay.
    async fn hold(&mut self, store: &dyn Dcs) -> crate::error::Result<bool> {
        let sent = self.clock.now();
        let took = store.acquire(&self.name, self.ttl).await;
        if matches!(took, Ok(true)) {
            self.renewed_at = Some(sent);
        }
        took
    }

    /// One cycle: the step and the sentence saying why.
    pub(crate) async fn cycle(&mut self, store: &dyn Dcs, f: &MemberFacts) -> (Step, String) {
        let me = self.name.clone();
        if f.frozen {
            return self.while_frozen(store).await;
        }
        if f.writable {
            self.down_since = None;
            // A leader renews for a postgres that answers. One that hangs
            // is given the start window, as a crashed one is, then killed:
            // the lease is not renewed for it, so either it restarts in
            // place while the lease still holds, or a replica takes over.
            if let Some(h) = f.hung.filter(|h| *h >= f.start_window) {
                return (
                    Step::Kill,
                    format!(
                        "{me}'s postgres has answered nothing for {:.1}s (primary_start_timeout is {}s): killing it so it cannot wake up writable; it restarts in place or its lease lapses",
                        h.as_secs_f64(),
                        f.start_window.as_secs()
                    ),
                );
            }
            return self.lead(store).await;
        }
        let now = self.clock.now();
        let handing_over = f.handover.as_ref().is_some_and(|h| h.from == me);
        if f.recorded_primary && !f.running && !handing_over {
            // Down, or not started yet: it keeps (or takes) the lease while
            // it starts in place, for at most the start window.
            let since = *self.down_since.get_or_insert(now);
            if now.saturating_sub(since) < f.start_window && f.others_writable.is_empty() {
                return self.hold_for_start(store, f.stopped_for.as_deref()).await;
            }
        } else {
            self.down_since = None;
        }
        let leader = match store.leader().await {
            Ok(l) => l,
            Err(e) => {
                return (Step::Wait, format!("{me}: cannot read the leader lease ({e}); no promotion without it"))
            }
        };
        self.seen_leader |= leader.is_some();
        match leader {
            Some(l) if l == me && f.running => {
                (Step::Promote, format!("{me} holds the leader lease but runs as a standby: promoting it"))
            }
            Some(l) if l == me => (
                Step::Wait,
                format!("{me} holds the leader lease and has not started within the start window: its lease lapses"),
            ),
            Some(l) => (Step::Follow(l.clone()), format!("{me} follows the leader {l}")),
            None => match &f.handover {
                Some(h) if h.to.as_deref() == Some(me.as_str()) => self.take_over(store, &h.from, f).await,
                Some(h) if h.from == me => (
                    Step::Wait,
                    format!(
                        "{me} gave up the lead to {}: waiting for it to take over",
                        h.to.as_deref().unwrap_or("the best replica")
                    ),
                ),
                Some(Handover { from, to: Some(to) }) => {
                    (Step::Wait, format!("{me}: the lead passes from {from} to {to}: no election"))
                }
                Some(_) => self.elect(store, f, true).await,
                None => self.elect(store, f, false).await,
            },
        }
    }

    /// A switchover's target, once the old leader gave up its key.
    async fn take_over(&mut self, store: &dyn Dcs, from: &str, f: &MemberFacts) -> (Step, String) {
        let me = self.name.clone();
        if !f.running {
            return (Step::Wait, format!("{me}: {from} handed it the lead, but its own postgres is not running"));
        }
        match self.hold(store).await {
            Ok(true) => {
                self.seen_leader = true;
                (Step::Promote, format!("{from} handed the lead to {me}: promoting {me}"))
            }
            Ok(false) => (Step::Wait, format!("{me}: {from} handed it the lead, but another node took the lease")),
            Err(e) => (Step::Wait, format!("{me}: cannot take the lead {from} handed it ({e})")),
        }
    }

    /// The recorded primary is not running here yet: hold the lease so it
    /// may start as the primary (the start gate asks for it), or, stopped
    /// for a switchover, until it hands the lead over.
    async fn hold_for_start(&mut self, store: &dyn Dcs, stopped_for: Option<&str>) -> (Step, String) {
        let me = self.name.clone();
        match self.hold(store).await {
            Ok(true) => {
                self.seen_leader = true;
                let why = match stopped_for {
                    Some(to) => {
                        format!("{me} holds the leader lease while its postgres is stopped for a switchover to {to}")
                    }
                    None => format!("{me} holds the leader lease while its postgres starts as the primary"),
                };
                (Step::Wait, why)
            }
            Ok(false) => (Step::Wait, format!("{me} is the recorded primary, but another node holds the leader lease")),
            Err(e) => (Step::Wait, format!("{me}: cannot take the leader lease to start as the primary ({e})")),
        }
    }

    /// A writable node: renew, or demote itself.
    async fn lead(&mut self, store: &dyn Dcs) -> (Step, String) {
        let me = self.name.clone();
        match self.hold(store).await {
            Ok(true) => (Step::Lead, format!("{me} is the leader and renewed its lease")),
            Ok(false) => {
                let holder = store.leader().await.ok().flatten().unwrap_or_else(|| "another node".into());
                self.renewed_at = None;
                (Step::Demote, format!("{me} takes writes but {holder} holds the leader lease: demoting {me}"))
            }
            Err(e) => {
                let now = self.clock.now();
                match (self.renewed_at, self.deadline()) {
                    (Some(s), Some(d)) if now < d => (
                        Step::Lead,
                        format!(
                            "{me} cannot reach the store ({e}); its lease, renewed {:.1}s ago, still holds: it is frozen at {:.1}s",
                            now.saturating_sub(s).as_secs_f64(),
                            d.saturating_sub(s).as_secs_f64()
                        ),
                    ),
                    _ => (
                        Step::Freeze,
                        format!(
                            "{me} could not renew its leader lease by its deadline ({e}): freezing {me} before the lease can pass to another node"
                        ),
                    ),
                }
            }
        }
    }

    /// The deadline passed and its postgres is frozen: thaw it only once
    /// the lease is ours again (renewed, or taken afresh because nobody
    /// took it); stop it for good once another node holds the lease. While
    /// the store stays silent it stays frozen: if etcd lost its quorum, no
    /// one else can lead either, and this primary resumes as it was.
    async fn while_frozen(&mut self, store: &dyn Dcs) -> (Step, String) {
        let me = self.name.clone();
        match self.hold(store).await {
            Ok(true) => (Step::Thaw, format!("{me} holds its leader lease again: thawing {me}")),
            Ok(false) => {
                self.renewed_at = None;
                let holder = store.leader().await.ok().flatten().unwrap_or_else(|| "another node".into());
                (Step::Demote, format!("{me} was frozen and {holder} now holds the leader lease: stopping {me}"))
            }
            Err(e) => (Step::Wait, format!("{me} stays frozen: the store does not answer ({e})")),
        }
    }

    /// No live lease: take it if this node is the best candidate.
    /// `asked`: a person asked for this failover, so manual mode and pause
    /// do not hold it back.
    async fn elect(&mut self, store: &dyn Dcs, f: &MemberFacts, asked: bool) -> (Step, String) {
        let me = self.name.clone();
        if f.mode == FailoverMode::Manual && !asked {
            return (
                Step::Wait,
                format!("{me}: no leader, and [failover] mode is manual: waiting for `pgrepl failover`"),
            );
        }
        if f.paused && !asked {
            return (Step::Wait, format!("{me}: no leader, and the cluster is paused: no automatic promotion"));
        }
        if !f.running {
            return (Step::Wait, format!("{me}: no leader, and its own postgres is not running"));
        }
        if let Some(w) = f.others_writable.first() {
            return (Step::Wait, format!("{me}: no leader, but {w} still answers as a writable primary: no promotion"));
        }
        let waited = self.clock.now().saturating_sub(self.started);
        if !self.seen_leader && waited < self.ttl * 2 {
            return (
                Step::Wait,
                format!(
                    "{me}: no leader yet; giving the primary's agent {:.0}s to take the lease before an election",
                    (self.ttl * 2).as_secs_f64()
                ),
            );
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
        match self.hold(store).await {
            Ok(true) => (
                Step::Promote,
                format!("no leader: {me} is the most advanced replica and took the lease: promoting {me}"),
            ),
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
        MemberFacts {
            mode: FailoverMode::Automatic,
            writable: true,
            running: true,
            candidates: vec![],
            paused: false,
            others_writable: vec![],
            frozen: false,
            recorded_primary: false,
            start_window: Duration::from_secs(10),
            handover: None,
            hung: None,
            stopped_for: None,
        }
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
    fn a_leader_whose_postgres_hangs_renews_through_the_start_window_then_kills_it() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let mut p1 = Member::new("pg-1", TTL, clock.clone());
        block(async {
            let hung = |secs| MemberFacts { hung: Some(Duration::from_secs(secs)), ..primary() };
            assert_eq!(p1.cycle(&store, &hung(9)).await.0, Step::Lead, "a stall shorter than the window");
            assert_eq!(
                p1.cycle(&store, &hung(10)).await,
                (
                    Step::Kill,
                    "pg-1's postgres has answered nothing for 10.0s (primary_start_timeout is 10s): killing it so it cannot wake up writable; it restarts in place or its lease lapses".into()
                )
            );
        });
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

    #[test]
    fn a_handed_over_lead_goes_to_the_target_while_the_others_wait_and_the_old_leader_keeps_off() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let [mut p1, mut p2, mut p3] = ["pg-1", "pg-2", "pg-3"].map(|n| Member::new(n, TTL, clock.clone()));
        // pg-2 is the target, though pg-3 would win an election.
        let handover = Some(Handover { from: "pg-1".into(), to: Some("pg-2".into()) });
        let target = MemberFacts {
            candidates: vec![cand("pg-2", "0/5000000"), cand("pg-3", "0/5000100")],
            handover: handover.clone(),
            ..replica()
        };
        // The old leader, stopped, still the recorded primary.
        let stopped = MemberFacts { writable: false, running: false, recorded_primary: true, ..target.clone() };
        block(async {
            assert_eq!(p1.cycle(&store, &primary()).await.0, Step::Lead);
            // The handover deleted its key (the store's release does that here).
            store.release("pg-1").await.unwrap();
            assert_eq!(
                p1.cycle(&store, &stopped).await,
                (Step::Wait, "pg-1 gave up the lead to pg-2: waiting for it to take over".into())
            );
            assert_eq!(
                p3.cycle(&store, &target).await,
                (Step::Wait, "pg-3: the lead passes from pg-1 to pg-2: no election".into())
            );
            assert_eq!(
                p2.cycle(&store, &target).await,
                (Step::Promote, "pg-1 handed the lead to pg-2: promoting pg-2".into())
            );
            assert_eq!(store.leader().await.unwrap().as_deref(), Some("pg-2"));
            assert_eq!(p1.cycle(&store, &stopped).await.0, Step::Follow("pg-2".into()));
        });
        // Without the handover, the stopped recorded primary would take the lease back.
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let mut p1 = Member::new("pg-1", TTL, clock.clone());
        let alone = MemberFacts { handover: None, ..stopped };
        block(async {
            assert_eq!(p1.cycle(&store, &alone).await.0, Step::Wait);
            assert_eq!(store.leader().await.unwrap().as_deref(), Some("pg-1"));
        });
    }

    #[test]
    fn an_asked_failover_elects_the_best_replica_even_in_manual_mode_and_the_old_leader_keeps_off() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let [mut p1, mut p2] = ["pg-1", "pg-2"].map(|n| Member::new(n, TTL, clock.clone()));
        let manual = MemberFacts { mode: FailoverMode::Manual, ..replica() };
        let asked = MemberFacts { handover: Some(Handover { from: "pg-1".into(), to: None }), ..manual.clone() };
        let stopped = MemberFacts { writable: false, running: false, recorded_primary: true, ..asked.clone() };
        block(async {
            // Seen a leader once, so no start-up grace applies.
            assert_eq!(p1.cycle(&store, &primary()).await.0, Step::Lead);
            assert_eq!(p2.cycle(&store, &manual).await.0, Step::Follow("pg-1".into()));
            store.release("pg-1").await.unwrap();
            assert_eq!(
                p2.cycle(&store, &manual).await,
                (Step::Wait, "pg-2: no leader, and [failover] mode is manual: waiting for `pgrepl failover`".into())
            );
            assert_eq!(
                p1.cycle(&store, &stopped).await,
                (Step::Wait, "pg-1 gave up the lead to the best replica: waiting for it to take over".into())
            );
            assert_eq!(p2.cycle(&store, &asked).await.0, Step::Promote);
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
    fn a_leader_cut_off_from_the_store_freezes_before_its_lease_can_expire() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let mut p1 = Member::new("pg-1", TTL, clock.clone());
        block(async {
            assert_eq!(p1.deadline(), None, "no lease, no deadline");
            assert_eq!(p1.cycle(&store, &primary()).await.0, Step::Lead);
            assert_eq!(p1.deadline(), Some(Duration::from_secs(2)), "d = s + L - m = 0 + 3s - 1s");
            clock.advance(Duration::from_secs(1));
            let (step, why) = p1.cycle(&Unreachable, &primary()).await;
            assert_eq!(step, Step::Lead, "{why}");
            assert!(why.contains("renewed 1.0s ago, still holds: it is frozen at 2.0s"), "{why}");
            clock.advance(Duration::from_millis(1000));
            let (step, why) = p1.cycle(&Unreachable, &primary()).await;
            assert_eq!(step, Step::Freeze, "{why}");
            // Before the lease it renewed could pass to anyone.
            assert_eq!(store.leader().await.unwrap().as_deref(), Some("pg-1"));
            let frozen = MemberFacts { frozen: true, writable: false, ..primary() };
            // Still silent, within two TTLs of the last renewal: stay frozen.
            assert_eq!(p1.cycle(&Unreachable, &frozen).await.0, Step::Wait);
            // The store answers again and the lease is still ours: thaw.
            assert_eq!(p1.cycle(&store, &frozen).await.0, Step::Thaw);
            assert_eq!(p1.deadline(), Some(Duration::from_secs(4)), "a fresh deadline from the renewal");
            // A replica cut off from the store never promotes.
            let mut p2 = Member::new("pg-2", TTL, clock.clone());
            assert_eq!(p2.cycle(&Unreachable, &replica()).await.0, Step::Wait);
        });
    }

    #[test]
    fn a_frozen_leader_whose_lease_passed_to_another_is_stopped_and_one_cut_off_stays_frozen() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let (mut p1, mut p2) = (Member::new("pg-1", TTL, clock.clone()), Member::new("pg-2", TTL, clock.clone()));
        let frozen = MemberFacts { frozen: true, writable: false, ..primary() };
        block(async {
            assert_eq!(p1.cycle(&store, &primary()).await.0, Step::Lead);
            assert_eq!(p2.cycle(&store, &replica()).await.0, Step::Follow("pg-1".into()));
            clock.advance(Duration::from_millis(3100));
            assert_eq!(p2.cycle(&store, &replica()).await.0, Step::Promote);
            assert_eq!(
                p1.cycle(&store, &frozen).await,
                (Step::Demote, "pg-1 was frozen and pg-2 now holds the leader lease: stopping pg-1".into())
            );
            let mut p3 = Member::new("pg-3", TTL, clock.clone());
            clock.advance(Duration::from_secs(10));
            assert_eq!(p3.cycle(&store, &MemberFacts { writable: true, ..primary() }).await.0, Step::Lead);
            clock.advance(Duration::from_secs(60));
            let (step, why) = p3.cycle(&Unreachable, &frozen).await;
            assert_eq!(step, Step::Wait, "{why}");
            assert!(why.contains("pg-3 stays frozen: the store does not answer"), "{why}");
        });
    }

    #[test]
    fn a_recorded_primary_holds_the_lease_while_it_starts_and_lets_it_lapse_after_the_start_window() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let mut p1 = Member::new("pg-1", TTL, clock.clone());
        let down = MemberFacts { writable: false, running: false, recorded_primary: true, ..primary() };
        block(async {
            assert_eq!(
                p1.cycle(&store, &down).await,
                (Step::Wait, "pg-1 holds the leader lease while its postgres starts as the primary".into())
            );
            assert_eq!(store.leader().await.unwrap().as_deref(), Some("pg-1"));
            // Stopped for a switchover, it says so rather than "starts".
            let handing = MemberFacts { stopped_for: Some("pg-2".into()), ..down.clone() };
            assert_eq!(
                p1.cycle(&store, &handing).await,
                (
                    Step::Wait,
                    "pg-1 holds the leader lease while its postgres is stopped for a switchover to pg-2".into()
                )
            );
            // It starts: a primary that renews.
            clock.advance(Duration::from_secs(1));
            assert_eq!(p1.cycle(&store, &primary()).await.0, Step::Lead);
            // It crashes and does not come back within the window.
            for _ in 0..10 {
                clock.advance(Duration::from_secs(1));
                assert_eq!(p1.cycle(&store, &down).await.0, Step::Wait);
            }
            clock.advance(Duration::from_secs(1));
            let (step, why) = p1.cycle(&store, &down).await;
            assert_eq!(step, Step::Wait);
            assert!(why.contains("has not started within the start window: its lease lapses"), "{why}");
            clock.advance(TTL);
            assert_eq!(store.leader().await.unwrap(), None, "the lease lapsed: a replica may take over");
        });
    }

    #[test]
    fn no_replica_promotes_while_another_node_answers_as_a_writable_primary() {
        let clock = Arc::new(FakeClock::default());
        let store = InProcess::new(clock.clone());
        let mut p2 = Member::new("pg-2", TTL, clock.clone());
        block(async {
            let f = MemberFacts { others_writable: vec!["pg-1".into()], ..replica() };
            let (step, why) = p2.cycle(&store, &f).await;
            assert_eq!(step, Step::Wait);
            assert_eq!(why, "pg-2: no leader, but pg-1 still answers as a writable primary: no promotion");
            assert_eq!(store.leader().await.unwrap(), None);
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
            // Neither saw a leader: they give the primary's agent two TTLs.
            let (step, why) = p2.cycle(&store, &sees("pg-2")).await;
            assert_eq!(step, Step::Wait);
            assert_eq!(why, "pg-2: no leader yet; giving the primary's agent 6s to take the lease before an election");
            clock.advance(TTL * 2);
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
