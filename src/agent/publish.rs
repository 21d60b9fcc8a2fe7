//! Across hosts: publish this host's nodes, as its monitor sees them, to
//! their member keys in etcd (at most once a second), so `status` on every
//! host shows them fully ([`crate::observe::status::published`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::{next_snapshot, Stop};
use crate::observe::snapshot::Latest;
use crate::observe::status::published::Published;
use crate::output::Output;
use crate::store::ctx::Ctx;
use crate::store::etcd::Members;

const EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn run(ctx: Arc<Ctx>, nodes: Vec<String>, mut latest: Latest, out: Output, mut stop: Stop) {
    let (Some(gw), Some(e)) = (ctx.etcd(), &ctx.cfg.etcd) else { return };
    let members = Arc::new(Members::new(gw.clone(), &e.prefix, &ctx.cfg.cluster_name, e.ttl));
    let mut last: Option<Instant> = None;
    let mut failing = false;
    while next_snapshot(&mut latest, &mut stop).await {
        if last.is_some_and(|t| t.elapsed() < EVERY) {
            continue;
        }
        last = Some(Instant::now());
        let Some(snap) = latest.borrow_and_update().clone() else { continue };
        let values: Vec<(String, String)> = nodes
            .iter()
            .filter_map(|n| Some((n.clone(), serde_json::to_string(&Published::of(&snap.status, n)?).ok()?)))
            .collect();
        let m = members.clone();
        let r = tokio::task::spawn_blocking(move || values.iter().try_for_each(|(n, v)| m.publish(n, v))).await;
        match r {
            Ok(Ok(())) if failing => {
                failing = false;
                out.info("etcd: publishing this host's nodes again");
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) if !failing => {
                failing = true;
                out.info(format!("etcd: cannot publish this host's nodes: {e}"));
            }
            _ => {}
        }
    }
}
