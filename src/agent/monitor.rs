//! The monitor task: every `[monitor] interval` it gathers a status
//! snapshot, judges it, and publishes it. The HTTP API and the metrics
//! serve the latest snapshot and never query postgres themselves.

use std::sync::Arc;

use tokio::sync::watch;

use crate::agent::supervise::Supervisor;
use crate::agent::Stop;
use crate::domain::time::now_unix;
use crate::observe::health::{self, Thresholds};
use crate::observe::snapshot::{count_moves, count_moves_to, Snapshot};
use crate::observe::status::gather::Gatherer;
use crate::store::ctx::Ctx;

/// The monitor task: publishes into `tx` until a stop is requested.
pub(crate) async fn run(ctx: Arc<Ctx>, sup: Supervisor, tx: watch::Sender<Option<Arc<Snapshot>>>, mut stop: Stop) {
    let gatherer = Gatherer::new(ctx.clone());
    let thresholds = Thresholds::from(&ctx.cfg.monitor);
    let mut tick = tokio::time::interval(ctx.cfg.monitor.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.requested() => return,
        }
        let taken_unix = now_unix();
        let Ok(status) = gatherer.gather().await else { continue };
        let health = health::evaluate(&status, &thresholds);
        let st = ctx.store().load().unwrap_or_default();
        let snap = Snapshot {
            status,
            health,
            taken_unix,
            restarts: sup.restarts(),
            moves: count_moves(&st),
            moves_to: count_moves_to(&st),
            thresholds,
            recorded: st.events,
        };
        if tx.send(Some(Arc::new(snap))).is_err() {
            return;
        }
    }
}
