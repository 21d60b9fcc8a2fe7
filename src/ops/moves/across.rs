//! Moves across hosts (`[etcd]`): the command runs on any host, asks
//! through etcd, and follows what the agents report; it touches no
//! postgres itself. The agent on each node's host does the work on it
//! (the leader's side of a switchover: `agent::ha::handover`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::switchover::{choose_target, Options};
use super::Steps;
use crate::error::{Error, Result};
use crate::observe::status::gather::gather_once;
use crate::output::Output;
use crate::store::ctx::Ctx;
pub(crate) use crate::store::etcd::Action;
use crate::store::etcd::{ActionProgress, Kind, Move, NodeAction, Progress, Requests};

/// How much longer than the catch-up timeout the request may live: the
/// checkpoint, the stop and the promotion around it.
const MARGIN: Duration = Duration::from_secs(15);

/// `pgrepl switchover` across hosts: checked here, carried out by the
/// leader's agent and the target's, followed here step by step.
pub(crate) async fn switchover(ctx: &Arc<Ctx>, o: &Options, out: &Output) -> Result<()> {
    let refused = |why: String| Error::Refused(format!("switchover refused, nothing changed: {why}"));
    let requests = ctx.requests().ok_or_else(|| Error::Other("no [etcd] section: not a multi-host cluster".into()))?;
    let c = ctx.clone();
    let leader = blocking(move || c.lease_holder()).await?.ok_or_else(|| {
        refused("no node holds the leader lease; use `pgrepl failover` when the primary is down".into())
    })?;
    // The target is checked here first, and again by the leader's agent.
    let settle = Instant::now() + Duration::from_secs(5);
    let target = loop {
        let status = gather_once(ctx).await?;
        let priority = |n: &str| ctx.cfg.node(n).map_or(1, |c| c.failover_priority);
        match choose_target(&status, &leader, o.to.as_deref(), o.max_lag, &priority) {
            Ok(t) => break t.to_string(),
            // A standby that has only just connected has not reported its
            // lag yet, and what other hosts publish is up to a second old.
            Err(why)
                if (why.contains("lag is unknown") || why.contains("is not a streaming replica"))
                    && Instant::now() < settle =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(why) => return Err(refused(why)),
        }
    };
    if let Some(why) = silent_agent(ctx, &target).await? {
        return Err(refused(why));
    }
    let req = Move {
        kind: Kind::Switchover,
        from: leader.clone(),
        to: target.clone(),
        stop_primary: false,
        allow_data_loss: false,
        max_lag: o.max_lag.0,
        timeout_secs: o.timeout.as_secs(),
        progress: Progress::Requested,
        steps: Vec::new(),
        lsn: None,
        outcome: None,
    };
    let (r, ask) = (requests.clone(), req.clone());
    let ttl = o.timeout + MARGIN;
    if let Some(other) = blocking(move || r.create(&ask, ttl)).await? {
        return Err(refused(under_way(&other)));
    }
    let mut steps = Steps::new(out);
    steps.step(format!("asked {leader}'s agent, through etcd, to hand the lead to {target}"));
    let result = follow(ctx, &requests, &mut steps, Instant::now() + ttl).await;
    // Done or failed, the request has served; a timeout leaves it to its lease.
    if !matches!(result, Err(Error::Timeout(_))) {
        let r = requests.clone();
        let _ = blocking(move || r.remove()).await;
    }
    result
}

/// `pgrepl failover` across hosts. Refused while the leader answers as a
/// writable primary, unless `--stop-primary` asks it to step down; a
/// leader that does not answer loses its key when its lease runs out (the
/// command counts it down). Then the target, or the best replica, takes
/// the key and promotes, in manual failover mode and while paused too.
pub(crate) async fn failover(ctx: &Arc<Ctx>, o: &super::failover::Options, out: &Output) -> Result<()> {
    let refused = |why: String| Error::Refused(format!("failover refused, nothing changed: {why}"));
    let requests = ctx.requests().ok_or_else(|| Error::Other("no [etcd] section: not a multi-host cluster".into()))?;
    let c = ctx.clone();
    let holder = blocking(move || c.lease_holder()).await?;
    let recorded = crate::store::view::ClusterView::read(ctx)?.primary.name;
    let from = holder.clone().unwrap_or(recorded);
    if let Some(t) = &o.to {
        let node = ctx.cfg.node(t)?;
        if *t == from {
            return Err(refused(format!("{t} is the primary; name a replica")));
        }
        if node.failover_priority == 0 {
            return Err(refused(crate::domain::election::never_promoted(t)));
        }
        if let Some(why) = silent_agent(ctx, t).await? {
            return Err(refused(why));
        }
    }
    let alive = match &holder {
        Some(l) => answers_writable(ctx, ctx.cfg.node(l)?).await,
        None => false,
    };
    if alive && !o.stop_primary {
        return Err(refused(format!(
            "{from} holds the leader lease and answers as a writable primary; for a planned move use `pgrepl switchover`, or add --stop-primary to stop {from} first"
        )));
    }
    let req = Move {
        kind: Kind::Failover,
        from: from.clone(),
        to: o.to.clone().unwrap_or_default(),
        stop_primary: o.stop_primary,
        allow_data_loss: o.allow_data_loss,
        max_lag: 0,
        timeout_secs: TIMEOUT.as_secs(),
        // Without a live leader there is nothing to stop: the lead is free
        // as soon as its lease is gone.
        progress: if holder.is_some() && o.stop_primary { Progress::Requested } else { Progress::Released },
        steps: Vec::new(),
        lsn: None,
        outcome: None,
    };
    let (r, ask) = (requests.clone(), req.clone());
    let ttl = TIMEOUT + MARGIN;
    if let Some(other) = blocking(move || r.create(&ask, ttl)).await? {
        return Err(refused(under_way(&other)));
    }
    let to = o.to.as_deref().unwrap_or("the best replica");
    let mut steps = Steps::new(out);
    match (&holder, o.stop_primary) {
        (Some(l), true) => {
            steps.step(format!("asked {l}'s agent, through etcd, to stop {l} and give up the lead to {to}"))
        }
        (Some(l), false) => steps.step(format!("{l} does not answer; its lead goes to {to} once its lease runs out")),
        (None, _) => steps.step(format!("no node holds the lead: asked for {to} to take it")),
    }
    let result = follow(ctx, &requests, &mut steps, Instant::now() + ttl).await;
    if !matches!(result, Err(Error::Timeout(_))) {
        let r = requests.clone();
        let _ = blocking(move || r.remove()).await;
    }
    result
}

/// `pgrepl rejoin NODE` / `reclone NODE` for a node on another host: its
/// own agent does it, and this command shows what it printed.
pub(crate) async fn node_action(ctx: &Arc<Ctx>, node: &str, action: Action, discard: bool, out: &Output) -> Result<()> {
    ask_agent(ctx, NodeAction::new(node, action, discard, None), out).await
}

/// A drill's fault on `node` (`seconds`: how long a freeze lasts), made by
/// the node's own agent, which also undoes it: a drill that dies midway
/// leaves no node frozen.
pub(crate) async fn node_fault(
    ctx: &Arc<Ctx>,
    node: &str,
    action: Action,
    seconds: Option<u64>,
    out: &Output,
) -> Result<()> {
    ask_agent(ctx, NodeAction::new(node, action, false, seconds), out).await
}

/// Leave `ask` for its node's agent and follow it to the end.
async fn ask_agent(ctx: &Arc<Ctx>, ask: NodeAction, out: &Output) -> Result<()> {
    let node = ask.node.clone();
    let node = node.as_str();
    let verb = ask.verb();
    let refused = |why: String| Error::Refused(format!("{verb} {node} refused, nothing changed: {why}"));
    let requests = ctx.requests().ok_or_else(|| Error::Other("no [etcd] section: not a multi-host cluster".into()))?;
    if let Some(why) = silent_agent(ctx, node).await? {
        return Err(refused(
            why.replace(&format!("only it can promote {node}"), &format!("only it can {verb} {node}")),
        ));
    }
    let (r, a) = (requests.clone(), ask.clone());
    if let Some(other) = blocking(move || r.create_action(&a, ACTION_TIMEOUT + MARGIN)).await? {
        return Err(refused(format!("{} {node} is under way ({:?})", other.verb(), other.progress)));
    }
    let mut steps = Steps::new(out);
    steps.step(format!("asked {node}'s agent, through etcd, to {verb} it"));
    let deadline = Instant::now() + ACTION_TIMEOUT + MARGIN;
    let mut printed = 0;
    let result = loop {
        let (r, name) = (requests.clone(), node.to_string());
        let Some(now) = blocking(move || r.read_action(&name)).await? else {
            break Err(Error::Other(format!("the {verb} request disappeared before {node}'s agent finished")));
        };
        // The agent's lines as it reports them (every half second while it works).
        for s in now.steps.iter().skip(printed) {
            steps.say(format!("{node}'s agent: {s}"));
        }
        printed = printed.max(now.steps.len());
        match now.progress {
            ActionProgress::Done | ActionProgress::Failed => {
                let outcome = now.outcome.unwrap_or_default();
                if now.progress == ActionProgress::Failed {
                    break Err(Error::Refused(outcome));
                }
                steps.say(outcome);
                break Ok(());
            }
            _ if Instant::now() > deadline => {
                break Err(Error::Timeout(format!(
                    "{node}'s agent did not finish the {verb} in time; see `pgrepl status`"
                )))
            }
            // The pace of following progress, not synchronisation.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let (r, name) = (requests.clone(), node.to_string());
    let _ = blocking(move || r.remove_action(&name)).await;
    result
}

/// How long a rejoin or re-clone on another host may take.
const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a failover may take, from the request to the promotion.
const TIMEOUT: Duration = Duration::from_secs(60);

fn under_way(other: &Move) -> String {
    let kind = if other.kind == Kind::Switchover { "switchover" } else { "failover" };
    let to = if other.to.is_empty() { "the best replica" } else { other.to.as_str() };
    format!("a {kind} from {} to {to} is under way ({:?}); wait for it to finish", other.from, other.progress)
}

/// Why `target` could not take the lead because its agent is silent (it
/// publishes no member key), if so: the target's own agent promotes it.
async fn silent_agent(ctx: &Arc<Ctx>, target: &str) -> Result<Option<String>> {
    let c = ctx.clone();
    let members = blocking(move || c.members()).await?;
    Ok((!members.iter().any(|(n, _)| n == target)).then(|| {
        format!(
            "{target}'s agent publishes nothing to etcd (it is down, frozen or cut off), and only it can promote {target}; start it (`pgrepl up` on {target}'s host) first"
        )
    }))
}

/// Whether `node` answers, over TCP within a second, as a writable primary.
async fn answers_writable(ctx: &Ctx, node: &crate::config::Node) -> bool {
    let ask = async {
        let c = ctx.connect_remote(node).await.ok()?;
        c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok().map(|r| !r.get::<_, bool>(0))
    };
    tokio::time::timeout(Duration::from_secs(1), ask).await.ok().flatten() == Some(true)
}

/// Print the agents' steps as they report them, until done or failed; while
/// a silent leader still holds its key, count its lease down.
async fn follow(ctx: &Ctx, requests: &Requests, steps: &mut Steps<'_>, deadline: Instant) -> Result<()> {
    let mut printed = 0;
    let mut stopping_seen: Option<Instant> = None;
    let mut counted: Option<i64> = None;
    loop {
        let r = requests.clone();
        let Some((now, _)) = blocking(move || r.read()).await? else {
            return Err(Error::Other(
                "the request disappeared before the agents finished; see `pgrepl status` and `pgrepl history`".into(),
            ));
        };
        for s in now.steps.iter().skip(printed) {
            steps.step(s);
        }
        printed = now.steps.len();
        if now.progress != Progress::Requested {
            stopping_seen.get_or_insert_with(Instant::now);
        }
        if now.kind == Kind::Failover && !matches!(now.progress, Progress::Done | Progress::Failed) {
            let left = match (ctx.etcd().cloned(), ctx.leader_key()) {
                (Some(gw), Some(key)) => {
                    blocking(move || crate::store::etcd::lease_left(&gw, &key)).await.ok().flatten()
                }
                _ => None,
            };
            // Only as it falls: a lease its agent still renews bounces back.
            if let Some(secs) = left.filter(|s| counted.is_none_or(|c| *s < c)) {
                steps.say(format!("waiting for {}'s leader lease to run out: {secs}s left", now.from));
                counted = Some(secs);
            }
        }
        match now.progress {
            Progress::Done => {
                let outcome = now.outcome.unwrap_or_default();
                if now.kind == Kind::Switchover {
                    let gap = stopping_seen.map_or(0.0, |t| t.elapsed().as_secs_f64());
                    steps.say(format!(
                        "{outcome}; from its CHECKPOINT to the promotion, seen from this host: {gap:.2}s"
                    ));
                } else {
                    steps.say(outcome);
                }
                return Ok(());
            }
            Progress::Failed => {
                let kind = if now.kind == Kind::Switchover { "switchover" } else { "failover" };
                return Err(Error::Refused(format!("{kind} {}", now.outcome.unwrap_or_default())));
            }
            _ if Instant::now() > deadline => {
                return Err(Error::Timeout(format!(
                    "the move did not finish in time (last: {:?}); the agents finish or undo it by themselves, see `pgrepl status`",
                    now.progress
                )));
            }
            // The pace of following progress, not synchronisation.
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Run a blocking etcd call off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Other(format!("etcd call: {e}")))?
}
