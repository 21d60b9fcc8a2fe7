//! The monitor task: every `[monitor] interval` it gathers a status
//! snapshot, judges it, and publishes it. The HTTP API and the metrics
//! serve the latest snapshot and never query postgres themselves.

use std::sync::Arc;

use tokio::sync::watch;

use crate::agent::supervise::Supervisor;
use crate::domain::time::now_unix;
use crate::observe::health::{self, Thresholds};
use crate::observe::snapshot::{count_moves, Latest, Snapshot};
use crate::observe::status::gather::Gatherer;
use crate::store::ctx::Ctx;

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
            let moves = crate::store::state::State::load(&ctx.layout.state_file())
                .map(|st| count_moves(&st))
                .unwrap_or_default();
            let snap = Snapshot { status, health, taken_unix, restarts: sup.restarts(), moves };
            if tx.send(Some(Arc::new(snap))).is_err() {
                return;
            }
        }
    });
    rx
}
