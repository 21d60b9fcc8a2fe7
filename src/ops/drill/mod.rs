//! `pgrepl drill`: a failover drill on the real cluster that measures what
//! an operator must know, RTO and RPO. A writer ([`client::write`]) and a
//! watcher ([`client::watch`]) record while each round injects a fault
//! into the primary ([`fault`]) and waits until a primary takes writes
//! again and every replica streams from it; [`measure`] turns the records
//! into figures and [`report`] prints them.
//!
//! Before anything it checks the cluster is healthy, and afterwards it
//! leaves it as it found it: its table dropped, every fault undone, and
//! if the cluster is not healthy again, what is left and how to fix it.

pub(crate) mod client;
pub(crate) mod fault;
pub(crate) mod html;
pub(crate) mod measure;
pub(crate) mod report;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::observe::status::ClusterStatus;
use crate::output::Output;
use crate::store::ctx::Ctx;
use client::{Clock, Login, Records, TABLE};
pub(crate) use fault::Fault;
use measure::Marks;
use report::Report;

/// What the user asked for.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub fault: Fault,
    pub rounds: u32,
    /// Writes per second.
    pub rate: u32,
    pub durability_check: bool,
    /// How long `freeze-postgres` and `freeze-host` keep the primary
    /// stopped, and `isolate-primary` cut off.
    pub freeze_for: Duration,
    /// How long a round may take to recover before it counts as failed.
    pub round_timeout: Duration,
}

/// Refuse options that do not fit, before anything is touched. Pure.
pub(crate) fn check(o: &Options, across_hosts: bool) -> Result<()> {
    if o.fault.needs_hosts() && !across_hosts {
        return Err(Error::Usage(format!(
            "--fault {} needs a cluster across hosts ([etcd], an agent per host); on one machine use switchover, kill-postgres or freeze-postgres",
            o.fault.name()
        )));
    }
    if !(1..=20).contains(&o.rounds) {
        return Err(Error::Usage(format!("--rounds {} is out of range; use 1 to 20", o.rounds)));
    }
    if !(1..=1000).contains(&o.rate) {
        return Err(Error::Usage(format!("--rate {}/s is out of range; use 1/s to 1000/s", o.rate)));
    }
    if o.freeze_for < Duration::from_secs(1) || o.freeze_for > Duration::from_secs(300) {
        return Err(Error::Usage("--freeze-for must be between 1s and 300s".into()));
    }
    if o.round_timeout < Duration::from_secs(10) {
        return Err(Error::Usage("--round-timeout must be at least 10s".into()));
    }
    Ok(())
}

/// `50/s`, `50`: writes per second.
pub(crate) fn parse_rate(s: &str) -> std::result::Result<u32, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    n.trim().parse().map_err(|_| format!("`{s}` is not a rate; write it like 50/s"))
}

/// The one writable primary, if every other node streams from it; or what
/// is wrong, in a sentence. Pure.
pub(crate) fn settled(s: &ClusterStatus) -> std::result::Result<String, String> {
    let primaries: Vec<&str> = s.nodes.iter().filter(|n| n.is_writable_primary()).map(|n| n.name.as_str()).collect();
    let primary = match primaries[..] {
        [p] => p,
        [] => return Err("no node is a writable primary".into()),
        _ => return Err(format!("{} are all writable primaries", primaries.join(" and "))),
    };
    let behind: Vec<&str> = s
        .nodes
        .iter()
        .filter(|n| n.name != primary && !(n.is_streaming_replica() && n.upstream.as_deref() == Some(primary)))
        .map(|n| n.name.as_str())
        .collect();
    if !behind.is_empty() {
        return Err(format!("{} not streaming from {primary}", behind.join(", ")));
    }
    Ok(primary.to_string())
}

/// Why the drill must not start, if so.
async fn preflight(ctx: &Arc<Ctx>) -> Result<String> {
    match ctx.requests() {
        // Across hosts: the agents make the moves; the request key is the lock.
        Some(requests) => {
            let asked = tokio::task::spawn_blocking(move || requests.read())
                .await
                .map_err(|e| Error::Other(e.to_string()))??;
            if let Some((m, _)) = asked {
                return Err(Error::Refused(format!(
                    "a {:?} is under way ({:?}); wait for it to finish",
                    m.kind, m.progress
                )));
            }
        }
        None => {
            crate::ops::control::Control::find(ctx)?;
        }
    }
    let status = crate::observe::status::gather::gather_once(ctx).await?;
    if let Some(p) = &status.paused {
        return Err(Error::Refused(format!(
            "the cluster is paused ({p}): a drill tests automatic failover; `pgrepl resume` first"
        )));
    }
    if let Some(e) = &status.state_error {
        return Err(Error::Refused(format!("the cluster's record cannot be read: {e}")));
    }
    if ctx.cfg.etcd.is_none() {
        // Taken and let go at once: only to see that no move is under way
        // (the HA task holds it for a moment on every snapshot, hence the wait).
        drop(crate::ops::control::wait_move_lock(ctx, Duration::from_secs(15)).await?);
    }
    // A cluster still settling from a move a moment ago (a replica
    // reconnecting, a status another host has not published yet) gets a
    // few seconds before the drill gives up on it.
    let deadline = Instant::now() + PREFLIGHT_WAIT;
    let mut status = status;
    loop {
        match settled(&status) {
            Ok(p) => return Ok(p),
            Err(why) if Instant::now() >= deadline => {
                return Err(Error::Refused(format!(
                    "the cluster is not healthy, so a drill would measure nothing useful: {why}; see `pgrepl status`"
                )))
            }
            Err(_) => {}
        }
        // The pace of looking again, not synchronisation.
        tokio::time::sleep(Duration::from_millis(500)).await;
        status = crate::observe::status::gather::gather_once(ctx).await?;
    }
}

/// How long the preflight waits for a settling cluster.
const PREFLIGHT_WAIT: Duration = Duration::from_secs(10);

/// Run the drill; the report, whatever happened in the rounds.
pub(crate) async fn run(ctx: &Arc<Ctx>, o: &Options, out: &Output) -> Result<Report> {
    check(o, ctx.cfg.etcd.is_some())?;
    let login = Login::for_cluster(ctx)?;
    let mut primary = preflight(ctx).await?;
    let started = crate::domain::time::now_unix();
    let d = Drill { ctx, login, o, out, clock: Clock(Instant::now()), rec: Arc::default() };
    let c = d.sql(&primary).await?;
    let make = format!(
        "DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    );
    c.batch_execute(&make).await.map_err(|e| Error::sql("creating the drill's table", e))?;
    drop(c);
    out.info(format!(
        "drill: {} round(s) of {} at {}/s; writing into {TABLE} in database {}",
        o.rounds,
        o.fault.name(),
        o.rate,
        d.login.db()
    ));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = client::write(ctx.clone(), d.login.clone(), o.rate, d.clock, d.rec.clone(), stopped.clone());
    let writer = tokio::spawn(writer);
    let watcher = tokio::spawn(client::watch(ctx.clone(), d.login.clone(), d.clock, d.rec.clone(), stopped));

    let mut marks: Vec<Marks> = Vec::new();
    for n in 1..=o.rounds as usize {
        let m = d.round(n, &primary).await;
        let failed = m.error.is_some();
        if let Some(p) = &m.primary_after {
            primary = p.clone();
        }
        marks.push(m);
        if failed {
            out.info(format!("drill: round {n} failed; no further rounds"));
            break;
        }
    }
    let _ = stop.send(true);
    let _ = writer.await;
    let _ = watcher.await;

    let records = std::mem::take(&mut *d.rec.lock().unwrap_or_else(|p| p.into_inner()));
    let (present, durability, left) = d.finish(&records).await;
    let rounds = marks
        .iter()
        .enumerate()
        .map(|(i, m)| measure::round(i + 1, m, &records.writes, &records.samples, &present))
        .collect();
    Ok(Report::new(ctx, o, started, d.clock.now(), rounds, durability, left))
}

/// One drill under way: what every round needs.
struct Drill<'a> {
    ctx: &'a Arc<Ctx>,
    login: Login,
    o: &'a Options,
    out: &'a Output,
    clock: Clock,
    rec: Arc<Mutex<Records>>,
}

impl Drill<'_> {
    /// A connection to `node` as the drill logs in.
    async fn sql(&self, node: &str) -> Result<tokio_postgres::Client> {
        let n = self.ctx.cfg.node(node)?;
        client::connect(self.ctx, &self.login, n, Duration::from_secs(5))
            .await
            .ok_or_else(|| Error::Other(format!("the drill cannot log in to {node}")))
    }

    /// The primary's timeline, from the name of the WAL file it writes.
    async fn timeline(&self, primary: &str) -> Option<i32> {
        let c = self.sql(primary).await.ok()?;
        let q = "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)";
        let hex: String = c.query_one(q, &[]).await.ok()?.get(0);
        i32::from_str_radix(&hex, 16).ok()
    }

    /// Writes acknowledged after `t`.
    fn acked_since(&self, t: f64) -> usize {
        let rec = self.rec.lock().unwrap_or_else(|p| p.into_inner());
        rec.writes.iter().filter(|w| w.result.as_ref().is_ok_and(|a| a.0 > t)).count()
    }

    /// Make the fault on `primary`. A move, or a fault the primary's agent
    /// makes across hosts, runs as a task the round waits for; a local
    /// freeze comes back as its guard.
    fn inject(&self, primary: &str) -> Result<(Option<tokio::task::JoinHandle<Result<()>>>, fault::Frozen)> {
        let node = self.ctx.cfg.node(primary)?.clone();
        let (ctx, out) = (self.ctx.clone(), self.out.clone());
        let across = ctx.cfg.etcd.is_some();
        let task = |f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>| Some(tokio::spawn(f));
        Ok(match self.o.fault {
            Fault::Switchover => {
                (task(Box::pin(async move { fault::switchover(&ctx, &out).await })), fault::Frozen::none())
            }
            // Across hosts the primary's own agent makes the fault (and undoes a freeze).
            f @ (Fault::KillPostgres
            | Fault::FreezePostgres
            | Fault::KillAgent
            | Fault::IsolatePrimary
            | Fault::FreezeHost)
                if across =>
            {
                let (action, secs) = match f {
                    Fault::FreezeHost => (crate::store::etcd::Action::FreezeHost, Some(self.o.freeze_for.as_secs())),
                    Fault::KillPostgres => (crate::store::etcd::Action::KillPostgres, None),
                    // The agent comes back after 5 s, as a service manager restarts it.
                    Fault::KillAgent => (crate::store::etcd::Action::KillAgent, Some(5)),
                    Fault::IsolatePrimary => {
                        // This host would be cut off too: the drill's writer and
                        // watcher would see nothing of the rest of the cluster.
                        if ctx.is_here(&node) {
                            return Err(Error::Refused(format!(
                                "isolate-primary cuts {}'s host off: run the drill from another host",
                                node.name
                            )));
                        }
                        (crate::store::etcd::Action::IsolatePrimary, Some(self.o.freeze_for.as_secs()))
                    }
                    _ => (crate::store::etcd::Action::FreezePostgres, Some(self.o.freeze_for.as_secs())),
                };
                let ask =
                    async move { crate::ops::moves::across::node_fault(&ctx, &node.name, action, secs, &out).await };
                (task(Box::pin(ask)), fault::Frozen::none())
            }
            Fault::KillPostgres => (fault::kill(&node).map(|()| None)?, fault::Frozen::none()),
            Fault::FreezePostgres => (None, fault::freeze(&node)?),
            other => return Err(Error::Usage(format!("--fault {} is not available here", other.name()))),
        })
    }

    /// One round: wait for writes to flow, inject the fault, wait for the
    /// cluster to settle again.
    async fn round(&self, n: usize, primary: &str) -> Marks {
        let (o, out, clock) = (self.o, self.out, self.clock);
        let mut m = Marks { start: clock.now(), primary_before: primary.to_string(), ..Marks::default() };
        // A second of writes before the fault, so the gap has a left edge.
        let flowing = crate::domain::deadline::poll(Duration::from_secs(30), Duration::from_millis(50), || async {
            (clock.now() - m.start >= 1.0 && self.acked_since(m.start) > 0).then_some(())
        })
        .await;
        if flowing.is_err() {
            m.error = Some(format!("no write was acknowledged for 30s before round {n}'s fault"));
            m.end = clock.now();
            return m;
        }
        m.timeline_before = self.timeline(primary).await;
        out.info(format!("drill: round {n}: {} on {primary}", o.fault.name()));
        m.fault = clock.now();
        m.fault_unix = crate::domain::time::now_unix();
        let (mut moving, mut frozen) = match self.inject(primary) {
            Ok(made) => made,
            Err(e) => {
                m.error = Some(format!("could not inject {}: {e}", o.fault.name()));
                m.end = clock.now();
                return m;
            }
        };
        let deadline = Instant::now() + o.round_timeout;
        let mut last_why = String::from("not checked yet");
        let mut agent_silent_seen = false;
        loop {
            if frozen.is_frozen() && clock.now() - m.fault >= o.freeze_for.as_secs_f64() {
                frozen.thaw();
                out.info(format!("drill: round {n}: {primary} thawed after {}s", o.freeze_for.as_secs()));
            }
            if let Some(task) = moving.as_mut().filter(|t| t.is_finished()) {
                if let Ok(Err(e)) = task.await {
                    m.error = Some(format!("the {} failed: {e}", o.fault.name()));
                    break;
                }
                moving = None;
            }
            let writes_back = self.acked_since(m.fault) > 0;
            if moving.is_some() {
                last_why = format!("the {} has not finished", o.fault.name());
            }
            if !frozen.is_frozen() && moving.is_none() && writes_back {
                let status = crate::observe::status::gather::gather_once(self.ctx).await;
                // A killed agent's fault is undone once it is back: it went
                // silent (its member key expired) and publishes again.
                let mut agent_back = |s: &ClusterStatus| {
                    if o.fault != Fault::KillAgent {
                        return Ok(());
                    }
                    let silent = s.silent_agents.iter().any(|n| n == primary);
                    agent_silent_seen |= silent;
                    match (agent_silent_seen, silent) {
                        (true, false) => Ok(()),
                        (false, _) => Err(format!("{primary}'s agent has not gone silent yet")),
                        (true, true) => Err(format!("{primary}'s agent is not back yet")),
                    }
                };
                let status = status.map_err(|e| e.to_string());
                match status.and_then(|s| agent_back(&s).and_then(|()| settled(&s))) {
                    Ok(p) => {
                        m.streaming = Some(clock.now());
                        m.timeline_after = self.timeline(&p).await;
                        m.primary_after = Some(p);
                        break;
                    }
                    Err(why) => last_why = why,
                }
            } else if !writes_back {
                let no_writable = self.rec.lock().unwrap_or_else(|p| p.into_inner()).no_writable.clone();
                last_why = match no_writable {
                    Some(why) => format!("no write acknowledged since the fault; the writer's last try: {why}"),
                    None => "no write acknowledged since the fault".into(),
                };
            }
            if Instant::now() > deadline {
                let secs = o.round_timeout.as_secs();
                m.error = Some(format!("the cluster did not recover within {secs}s: {last_why}"));
                break;
            }
            // The pace of checking for recovery, not synchronisation.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        frozen.thaw();
        // A few writes on the settled cluster close the round.
        let settled_at = clock.now();
        let _ = crate::domain::deadline::poll(Duration::from_secs(5), Duration::from_millis(50), || async {
            (self.acked_since(settled_at) >= 3).then_some(())
        })
        .await;
        m.end = clock.now();
        if m.error.is_none() {
            out.info(format!(
                "drill: round {n}: {} is the primary and every replica streams from it, {:.2}s after the fault",
                m.primary_after.as_deref().unwrap_or("?"),
                m.streaming.unwrap_or(m.end) - m.fault
            ));
        }
        m
    }

    /// After the rounds: which ids the primary has, what each node is
    /// missing (with `--durability-check`), the table dropped, and what is
    /// left wrong with the cluster, if anything.
    async fn finish(&self, rec: &Records) -> (HashSet<i64>, Option<Vec<report::NodeCheck>>, Option<String>) {
        let status = crate::observe::status::gather::gather_once(self.ctx).await;
        let primary = match status.as_ref().map_err(|e| e.to_string()).and_then(settled) {
            Ok(p) => p,
            Err(why) => {
                let left = format!(
                    "the cluster is not healthy after the drill: {why}. See `pgrepl status`; `pgrepl rejoin NODE` or `pgrepl reclone NODE` brings a node back, and `DROP TABLE {TABLE}` on the primary (database {}) removes the drill's table",
                    self.login.db()
                );
                return (HashSet::new(), None, Some(left));
            }
        };
        let ids = |c: tokio_postgres::Client| async move {
            let rows = c.query(&format!("SELECT id FROM {TABLE}"), &[]).await.ok()?;
            Some(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<HashSet<i64>>())
        };
        let present = match self.sql(&primary).await {
            Ok(c) => ids(c).await.unwrap_or_default(),
            Err(_) => HashSet::new(),
        };
        let mut durability = None;
        if self.o.durability_check {
            let acked: Vec<i64> = rec.writes.iter().filter(|w| w.result.is_ok()).map(|w| w.id).collect();
            let lsn = match self.sql(&primary).await {
                Ok(c) => {
                    c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.ok().map(|r| r.get::<_, String>(0))
                }
                Err(_) => None,
            };
            let mut checks = Vec::new();
            for node in &self.ctx.cfg.nodes {
                let Ok(c) = self.sql(&node.name).await else {
                    checks.push(report::NodeCheck { node: node.name.clone(), missing: None });
                    continue;
                };
                if let (Some(lsn), true) = (&lsn, node.name != primary) {
                    // Read once it has replayed what the primary had after the drill.
                    let q = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn";
                    let caught_up =
                        || async { c.query_one(q, &[lsn]).await.ok()?.get::<_, Option<bool>>(0)?.then_some(()) };
                    let _ =
                        crate::domain::deadline::poll(Duration::from_secs(30), Duration::from_millis(100), caught_up)
                            .await;
                }
                let missing = ids(c).await.map(|h| acked.iter().filter(|id| !h.contains(id)).count());
                checks.push(report::NodeCheck { node: node.name.clone(), missing });
            }
            durability = Some(checks);
        }
        let dropped = match self.sql(&primary).await {
            Ok(c) => c.batch_execute(&format!("DROP TABLE {TABLE}")).await.is_ok(),
            Err(_) => false,
        };
        let left = (!dropped).then(|| {
            format!(
                "the drill's table is still there: `DROP TABLE {TABLE}` on {primary} (database {})",
                self.login.db()
            )
        });
        (present, durability, left)
    }
}
