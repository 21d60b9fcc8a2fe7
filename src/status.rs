//! `pgrepl status`: one snapshot of every node, gathered in parallel, shown
//! as a table or stable JSON. Local nodes are asked over their socket as
//! the superuser; nodes on other hosts over TCP as the replication role.
//!
//! Lag, everywhere: bytes are the primary's current WAL position minus the
//! replica's write/flush/replay position from `pg_stat_replication`;
//! seconds are that view's `*_lag`, except that a replica 0 bytes behind
//! has 0 s of lag (the view shows stale values, then NULL, once WAL stops).
//! An unknown value is `null`, never 0.

use std::sync::Arc;

use serde::Serialize;
use tokio_postgres::Client;

use crate::config::Node;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::lsn::Lsn;
use crate::pg::datadir;

/// The whole cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    /// The node pgrepl considers primary now.
    pub primary: String,
    pub nodes: Vec<NodeStatus>,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// `primary` or `replica` as observed (`pg_is_in_recovery`), or null if unknown.
    pub role: Option<String>,
    /// `running`, `stopped` (local, no postmaster) or `unreachable`.
    pub state: String,
    pub pid: Option<i32>,
    pub timeline: Option<i32>,
    pub current_lsn: Option<Lsn>,
    pub received_lsn: Option<Lsn>,
    pub replayed_lsn: Option<Lsn>,
    /// As the primary sees this replica.
    pub replication: Option<Replication>,
    pub error: Option<String>,
}

/// One `pg_stat_replication` row, with lag computed.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sent_lsn: Option<Lsn>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    pub lag_bytes: Lag<u64>,
    pub lag_seconds: Lag<f64>,
}

/// Lag of each kind; `None` is unknown.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Lag<T> {
    pub write: Option<T>,
    pub flush: Option<T>,
    pub replay: Option<T>,
}

struct Raw {
    standby: bool,
    current: Option<Lsn>,
    received: Option<Lsn>,
    replayed: Option<Lsn>,
    timeline: Option<i32>,
    rows: Vec<Row>,
}

struct Row {
    app: String,
    state: Option<String>,
    sync_state: Option<String>,
    lsns: [Option<Lsn>; 4],
    secs: [Option<f64>; 3],
}

fn lsn(s: Option<String>) -> Option<Lsn> {
    s.and_then(|s| s.parse().ok())
}

async fn query(c: &Client) -> std::result::Result<Raw, tokio_postgres::Error> {
    let r = c
        .query_one(
            "SELECT pg_is_in_recovery(),
                    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
                    pg_last_wal_receive_lsn()::text,
                    pg_last_wal_replay_lsn()::text,
                    CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
                         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
            &[],
        )
        .await?;
    let standby: bool = r.get(0);
    let mut rows = Vec::new();
    if !standby {
        for r in c
            .query(
                "SELECT application_name, state, sync_state, sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
                        extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, extract(epoch FROM replay_lag)::float8
                 FROM pg_stat_replication",
                &[],
            )
            .await?
        {
            rows.push(Row {
                app: r.get(0),
                state: r.get(1),
                sync_state: r.get(2),
                lsns: [lsn(r.get(3)), lsn(r.get(4)), lsn(r.get(5)), lsn(r.get(6))],
                secs: [r.get(7), r.get(8), r.get(9)],
            });
        }
    }
    Ok(Raw {
        standby,
        current: lsn(r.get(1)),
        received: lsn(r.get(2)),
        replayed: lsn(r.get(3)),
        timeline: r.get(4),
        rows,
    })
}

/// Lag of one kind: bytes from the primary's position; seconds from the
/// view, or 0 when the replica is fully caught up and the view says NULL.
pub fn lag(current: Option<Lsn>, at: Option<Lsn>, view_secs: Option<f64>) -> (Option<u64>, Option<f64>) {
    let bytes = match (current, at) {
        (Some(c), Some(a)) => Some(c.bytes_since(a).unwrap_or(0)),
        _ => None,
    };
    // Caught up means no lag, whatever the view still shows: it keeps the
    // last measured value for a while after WAL stops, then turns NULL.
    let secs = if bytes == Some(0) { Some(0.0) } else { view_secs };
    (bytes, secs)
}

async fn one(ctx: Arc<Ctx>, node: Node) -> (NodeStatus, Option<Raw>) {
    let mut st = NodeStatus {
        name: node.name.clone(),
        host: node.host.clone(),
        port: node.port,
        role: None,
        state: "unreachable".into(),
        pid: None,
        timeline: None,
        current_lsn: None,
        received_lsn: None,
        replayed_lsn: None,
        replication: None,
        error: None,
    };
    let local = node.data_dir.join("PG_VERSION").exists();
    let conn = if local {
        match datadir::running_postmaster(&node.data_dir) {
            None => {
                st.state = "stopped".into();
                return (st, None);
            }
            Some(pf) => {
                st.pid = Some(pf.pid);
                ctx.connect(&node).await
            }
        }
    } else {
        ctx.connect_remote(&node).await
    };
    let raw = match conn {
        Ok(c) => query(&c).await.map_err(|e| crate::error::Error::sql("querying", e)),
        Err(e) => Err(e),
    };
    match raw {
        Ok(raw) => {
            st.state = "running".into();
            st.role = Some(if raw.standby { "replica" } else { "primary" }.into());
            st.timeline = raw.timeline;
            st.current_lsn = raw.current;
            st.received_lsn = raw.received;
            st.replayed_lsn = raw.replayed;
            (st, Some(raw))
        }
        Err(e) => {
            st.error = Some(e.to_string());
            (st, None)
        }
    }
}

/// Gather the status of every configured node.
pub async fn gather(ctx: &Arc<Ctx>) -> Result<ClusterStatus> {
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in ctx.cfg.nodes.iter().enumerate() {
        let (ctx, n) = (ctx.clone(), n.clone());
        set.spawn(async move { (i, one(ctx, n).await) });
    }
    let mut results: Vec<(usize, (NodeStatus, Option<Raw>))> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            results.push(r);
        }
    }
    results.sort_by_key(|r| r.0);
    let (statuses, raws): (Vec<NodeStatus>, Vec<Option<Raw>>) = results.into_iter().map(|(_, r)| r).unzip();
    let primary_raw = raws.iter().flatten().find(|r| !r.standby);
    let mut nodes = Vec::new();
    for mut st in statuses {
        if let Some(p) = primary_raw {
            if let Some(row) = p.rows.iter().find(|r| r.app == st.name) {
                let (wb, ws) = lag(p.current, row.lsns[1], row.secs[0]);
                let (fb, fs) = lag(p.current, row.lsns[2], row.secs[1]);
                let (rb, rs) = lag(p.current, row.lsns[3], row.secs[2]);
                st.replication = Some(Replication {
                    state: row.state.clone(),
                    sync_state: row.sync_state.clone(),
                    sent_lsn: row.lsns[0],
                    write_lsn: row.lsns[1],
                    flush_lsn: row.lsns[2],
                    replay_lsn: row.lsns[3],
                    lag_bytes: Lag { write: wb, flush: fb, replay: rb },
                    lag_seconds: Lag { write: ws, flush: fs, replay: rs },
                });
            }
        }
        nodes.push(st);
    }
    Ok(ClusterStatus { cluster: ctx.cfg.cluster_name.clone(), primary: ctx.current_primary().name.clone(), nodes })
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The table form.
pub fn render_table(s: &ClusterStatus) -> String {
    let mut rows = vec![[
        "NODE",
        "ROLE",
        "STATE",
        "PID",
        "PORT",
        "TL",
        "CURRENT",
        "RECEIVED",
        "REPLAYED",
        "REPLICATION",
        "LAG BYTES",
        "LAG SEC",
    ]
    .map(String::from)
    .to_vec()];
    for n in &s.nodes {
        let r = n.replication.as_ref();
        let repl = r.map_or("-".into(), |r| format!("{}/{}", opt(&r.state), opt(&r.sync_state)));
        let lag_b = r.map_or("-".into(), |r| r.lag_bytes.replay.map_or("unknown".into(), |b| b.to_string()));
        let lag_s = r.map_or("-".into(), |r| r.lag_seconds.replay.map_or("unknown".into(), |s| format!("{s:.3}")));
        rows.push(vec![
            n.name.clone(),
            n.role.clone().unwrap_or_else(|| "unknown".into()),
            n.state.clone(),
            opt(&n.pid),
            n.port.to_string(),
            opt(&n.timeline),
            opt(&n.current_lsn),
            opt(&n.received_lsn),
            opt(&n.replayed_lsn),
            repl,
            lag_b,
            lag_s,
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = format!("cluster {} (primary: {})\n", s.cluster, s.primary);
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for n in s.nodes.iter().filter(|n| n.error.is_some()) {
        out.push_str(&format!("{}: {}\n", n.name, opt(&n.error)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_caught_up_replica_has_zero_lag_not_unknown() {
        let l: Lsn = "0/3000148".parse().unwrap();
        assert_eq!(lag(Some(l), Some(l), None), (Some(0), Some(0.0)));
    }

    #[test]
    fn caught_up_replica_ignores_the_views_stale_seconds() {
        let l: Lsn = "0/3000148".parse().unwrap();
        assert_eq!(lag(Some(l), Some(l), Some(0.101)), (Some(0), Some(0.0)));
    }

    #[test]
    fn behind_with_null_view_is_unknown_seconds() {
        let c: Lsn = "0/3000148".parse().unwrap();
        let r: Lsn = "0/3000000".parse().unwrap();
        assert_eq!(lag(Some(c), Some(r), None), (Some(0x148), None));
        assert_eq!(lag(Some(c), None, None), (None, None));
    }
}
