//! The long-running side of pgrepl: the [`Agent`] runs this host's nodes
//! under a supervisor, with the tasks that watch and keep them (monitor,
//! health API, HA, durability). It owns every task it starts and stops
//! them in order: tasks first (each finishes what it is doing), then the
//! nodes, replicas before the primary.

pub(crate) mod api;
pub(crate) mod dashboard;
pub(crate) mod durability;
pub(crate) mod fence;
pub(crate) mod ha;
pub(crate) mod monitor;
pub(crate) mod notify;
pub(crate) mod publish;
pub(crate) mod supervise;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Node;
use crate::observe::snapshot::Latest;
use crate::output::Output;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;
use crate::store::dcs::{InProcess, SystemClock};
use crate::store::view::ClusterView;
use supervise::Supervisor;

/// Tells the agent's tasks to finish. Each sees it between cycles, so an
/// action under way (a failover, say) completes first.
#[derive(Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once a stop is requested.
    pub(crate) async fn requested(&mut self) {
        // An error means the agent is gone: that is a stop too.
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// Wait for the monitor's next snapshot: false once a stop is requested
/// or the monitor has ended.
pub(crate) async fn next_snapshot(latest: &mut Latest, stop: &mut Stop) -> bool {
    tokio::select! {
        r = latest.changed() => r.is_ok(),
        _ = stop.requested() => false,
    }
}

/// This host's nodes and the tasks around them.
pub(crate) struct Agent {
    ctx: Arc<Ctx>,
    sup: Supervisor,
    out: Output,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    /// The monitor's snapshots: sent once [`Agent::watch`] starts it.
    snapshots: watch::Sender<Option<Arc<crate::observe::snapshot::Snapshot>>>,
}

impl Agent {
    /// A supervisor for `nodes` (nothing starts yet). Across hosts the HA
    /// loop starts here, before any node: a primary starts only under the
    /// leader lease, which that loop takes and keeps.
    pub(crate) fn new(ctx: Arc<Ctx>, nodes: &[Node], out: Output, fence: Option<Arc<fence::Fence>>) -> Agent {
        let sup = Supervisor::new(ctx.clone(), nodes, out.clone());
        let mut agent = Agent {
            ctx: ctx.clone(),
            sup,
            out,
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
            snapshots: watch::channel(None).0,
        };
        if ctx.cfg.etcd.is_some() {
            let (sup, out, latest) = (agent.sup.clone(), agent.out.clone(), agent.snapshots.subscribe());
            agent.tasks.spawn(ha::hosted::run(ctx, sup, latest, out, fence, agent.stop_signal()));
        }
        agent
    }

    pub(crate) fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    fn stop_signal(&self) -> Stop {
        Stop(self.stop.subscribe())
    }

    /// Start watching `nodes` once they are up: the monitor and the health
    /// API always; on one machine, the HA task when this agent runs every
    /// node of the cluster (one decider that sees them all); the
    /// durability task when it runs the primary (across hosts, always: the
    /// primary may move here).
    pub(crate) async fn watch(&mut self, nodes: &[Node]) {
        let ctx = self.ctx.clone();
        let (tx, latest) = (self.snapshots.clone(), self.snapshots.subscribe());
        self.tasks.spawn(monitor::run(ctx.clone(), self.sup.clone(), tx, self.stop_signal()));
        if ctx.cfg.api.enabled {
            let dash = dashboard::Dashboard::new(dashboard_settings(&ctx));
            self.tasks.spawn(dashboard::run(dash.clone(), latest.clone(), self.stop_signal()));
            let api = api::Server::new(ctx.clone(), latest.clone(), dash, self.out.clone(), self.stop_signal());
            if let Some(api) = api {
                for (listener, name) in api.bind(nodes).await {
                    self.tasks.spawn(api.clone().accept(listener, name, self.stop_signal()));
                }
            }
        }
        let across_hosts = ctx.cfg.etcd.is_some();
        if !across_hosts && nodes.len() == ctx.cfg.nodes.len() && ctx.cfg.nodes.len() > 1 {
            let dcs = Arc::new(InProcess::new(Arc::new(SystemClock::default())));
            let (sup, out) = (self.sup.clone(), self.out.clone());
            self.tasks.spawn(ha::task::run(ctx.clone(), sup, latest.clone(), dcs, out, self.stop_signal()));
        }
        if across_hosts {
            let names = nodes.iter().map(|n| n.name.clone()).collect();
            self.tasks.spawn(publish::run(ctx.clone(), names, latest.clone(), self.out.clone(), self.stop_signal()));
        }
        if across_hosts || nodes.iter().any(|n| n.name == ClusterView::read_for_display(&ctx).primary.name) {
            self.tasks.spawn(durability::run(ctx.clone(), latest, self.out.clone(), self.stop_signal()));
        }
    }

    /// Stop the tasks and wait for them, then stop the nodes (fast mode,
    /// replicas first). With `leave_running` the nodes are let go instead:
    /// each node task ends when the supervisor is dropped, and only an
    /// explicit stop ever stops a postmaster.
    pub(crate) async fn stop(mut self, leave_running: bool) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        if !leave_running {
            self.sup.shutdown(&ClusterView::read_for_display(&self.ctx).primary.name, StopMode::Fast).await;
        }
    }
}

/// What the dashboard's page needs to know of the config: the thresholds
/// it draws as bands and whether its write buttons can work.
fn dashboard_settings(ctx: &Ctx) -> serde_json::Value {
    let m = &ctx.cfg.monitor;
    serde_json::json!({
        "cluster": ctx.cfg.cluster_name,
        "interval_seconds": m.interval.as_secs_f64(),
        "warn_lag_seconds": m.warn_lag.as_secs_f64(),
        "crit_lag_seconds": m.crit_lag.as_secs_f64(),
        "crit_slot_retained_bytes": m.crit_slot_retained.0,
        "write": matches!(ctx.cfg.api.write, crate::config::WriteAccess::Token(_)),
        "across_hosts": ctx.cfg.etcd.is_some(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_waiting_for_a_snapshot_ends_when_a_stop_is_requested() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let (tx, mut latest) = watch::channel(None);
            let (stop_tx, stop_rx) = watch::channel(false);
            let mut stop = Stop(stop_rx);
            tx.send(None).unwrap();
            assert!(next_snapshot(&mut latest, &mut stop).await, "a new snapshot wakes the task");
            stop_tx.send(true).unwrap();
            assert!(!next_snapshot(&mut latest, &mut stop).await, "a stop ends its loop");
            // A stop that was requested before the task looked still counts.
            assert!(!next_snapshot(&mut latest, &mut stop).await);
        });
    }
}
