//! The supervisor's monitor task: every `[monitor] interval` it gathers a
//! status snapshot, judges it, and publishes it. The HTTP API and the
//! metrics serve the latest snapshot and never query postgres themselves.

use std::sync::Arc;

use tokio::sync::watch;

use crate::ctx::Ctx;
use crate::health::{self, Report, Thresholds};
use crate::status::gather::Gatherer;
use crate::status::{now_unix, ClusterStatus};
use crate::supervise::Supervisor;

/// One published snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: ClusterStatus,
    pub health: Report,
    /// Unix time it was taken.
    pub taken_unix: f64,
    /// Supervisor restarts per local node.
    pub restarts: Vec<(String, u32)>,
}

/// The latest snapshot, if one has been taken.
pub type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// Start the monitor task ("monitor") and return its output.
pub fn spawn(ctx: Arc<Ctx>, sup: Supervisor) -> Latest {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let gatherer = Gatherer::new(ctx.clone());
        let thresholds = Thresholds::from(&ctx.cfg.monitor);
        let mut tick = tokio::time::interval(ctx.cfg.monitor.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let taken_unix = now_unix();
            let Ok(status) = gatherer.gather().await else { continue };
            let health = health::evaluate(&status, &thresholds);
            let snap = Snapshot { status, health, taken_unix, restarts: sup.restarts() };
            if tx.send(Some(Arc::new(snap))).is_err() {
                return;
            }
        }
    });
    rx
}
