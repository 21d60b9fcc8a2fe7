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
use crate::store::etcd::{Progress, Requests, Switchover};

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
    let req = Switchover {
        from: leader.clone(),
        to: target.clone(),
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
        return Err(refused(format!(
            "a switchover from {} to {} is under way ({:?}); wait for it to finish",
            other.from, other.to, other.progress
        )));
    }
    let mut steps = Steps::new(out);
    steps.step(format!("asked {leader}'s agent, through etcd, to hand the lead to {target}"));
    let result = follow(&requests, &mut steps, Instant::now() + ttl).await;
    // Done or failed, the request has served; a timeout leaves it to its lease.
    if !matches!(result, Err(Error::Timeout(_))) {
        let r = requests.clone();
        let _ = blocking(move || r.remove()).await;
    }
    result
}

/// Print the agents' steps as they report them, until done or failed.
async fn follow(requests: &Requests, steps: &mut Steps<'_>, deadline: Instant) -> Result<()> {
    let mut printed = 0;
    let mut stopping_seen: Option<Instant> = None;
    loop {
        let r = requests.clone();
        let Some((now, _)) = blocking(move || r.read()).await? else {
            return Err(Error::Other(
                "the switchover request disappeared before the agents finished; see `pgrepl status` and `pgrepl history`"
                    .into(),
            ));
        };
        for s in now.steps.iter().skip(printed) {
            steps.step(s);
        }
        printed = now.steps.len();
        if now.progress != Progress::Requested {
            stopping_seen.get_or_insert_with(Instant::now);
        }
        match now.progress {
            Progress::Done => {
                let gap = stopping_seen.map_or(0.0, |t| t.elapsed().as_secs_f64());
                steps.say(format!(
                    "{}; from its CHECKPOINT to the promotion, seen from this host: {gap:.2}s",
                    now.outcome.unwrap_or_default()
                ));
                return Ok(());
            }
            Progress::Failed => {
                return Err(Error::Refused(format!("switchover {}", now.outcome.unwrap_or_default())));
            }
            _ if Instant::now() > deadline => {
                return Err(Error::Timeout(format!(
                    "the switchover did not finish in time (last: {:?}); the agents finish or undo it by themselves, see `pgrepl status`",
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
