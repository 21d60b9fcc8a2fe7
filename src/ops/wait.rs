//! Waiting for a node to answer SQL or to stream, with a deadline.

use std::time::Duration;

use crate::config::Node;
use crate::error::{Error, Result};
use crate::pg::{datadir, sql};
use crate::store::ctx::Ctx;

pub async fn wait_sql(ctx: &Ctx, node: &Node, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match ctx.connect(node).await {
            Ok(c) if c.simple_query("SELECT 1").await.is_ok() => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Timeout(format!("{}: SQL ping failed for {}s", node.name, timeout.as_secs())))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Wait until the primary lists `node` as streaming (or, when the primary
/// is on another host, until the node's own WAL receiver says so).
pub async fn wait_streaming(ctx: &Ctx, node: &Node, primary: &Node) -> Result<()> {
    let timeout = ctx.cfg.supervisor.start_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let primary_local = datadir::running_postmaster(&primary.data_dir).is_some();
    // One session, kept across polls (a new one is a backend fork each time).
    let mut conn = None;
    loop {
        if conn.is_none() {
            conn = ctx.connect(if primary_local { primary } else { node }).await.ok();
        }
        let streaming = match &conn {
            Some(c) if primary_local => sql::is_streaming(c, &node.name).await,
            Some(c) => c
                .query_opt("SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'", &[])
                .await
                .map(|r| r.is_some())
                .map_err(|e| Error::sql("reading pg_stat_wal_receiver", e)),
            None => Ok(false),
        };
        let streaming = streaming.unwrap_or_else(|_| {
            conn = None;
            false
        });
        if streaming {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{}: started, but not streaming from {} after {}s; see its log lines above (pg_hba, password, or the primary's max_wal_senders)",
                node.name,
                primary.name,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
