//! Waiting for a node to answer SQL or to stream, with a deadline.

use std::time::Duration;

use crate::config::Node;
use crate::domain::deadline::poll;
use crate::error::{Error, Result};
use crate::pg::{datadir, sql};
use crate::store::ctx::Ctx;

/// Wait until `node` answers a SQL ping; at the deadline, the last
/// connection error (or a timeout that says so).
pub(crate) async fn wait_sql(ctx: &Ctx, node: &Node, timeout: Duration) -> Result<()> {
    let last = std::sync::Mutex::new(None);
    let ping = || async {
        match ctx.connect(node).await {
            Ok(c) => c.simple_query("SELECT 1").await.ok().map(|_| ()),
            Err(e) => {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
        }
    };
    match poll(timeout, Duration::from_millis(20), ping).await {
        Ok(()) => Ok(()),
        Err(_) => Err(last
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(|| Error::Timeout(format!("{}: SQL ping failed for {}s", node.name, timeout.as_secs())))),
    }
}

/// Wait until the primary lists `node` as streaming (or, when the primary
/// is on another host, until the node's own WAL receiver says so).
pub(crate) async fn wait_streaming(ctx: &Ctx, node: &Node, primary: &Node) -> Result<()> {
    let timeout = ctx.cfg.supervisor.start_timeout;
    let primary_local = datadir::running_postmaster(&primary.data_dir).is_some();
    // One session, kept across polls (a new one is a backend fork each time).
    let conn = tokio::sync::Mutex::new(None);
    let streaming = || async {
        let mut conn = conn.lock().await;
        if conn.is_none() {
            *conn = ctx.connect(if primary_local { primary } else { node }).await.ok();
        }
        let c = conn.as_ref()?;
        let answer = if primary_local {
            sql::is_streaming(c, &node.name).await
        } else {
            c.query_opt("SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'", &[])
                .await
                .map(|r| r.is_some())
                .map_err(|e| Error::sql("reading pg_stat_wal_receiver", e))
        };
        match answer {
            Ok(true) => Some(()),
            Ok(false) => None,
            Err(_) => {
                *conn = None;
                None
            }
        }
    };
    poll(timeout, Duration::from_millis(20), streaming).await.map_err(|_| {
        Error::Timeout(format!(
            "{}: started, but not streaming from {} after {}s; see its log lines above (pg_hba, password, or the primary's max_wal_senders)",
            node.name,
            primary.name,
            timeout.as_secs()
        ))
    })
}
