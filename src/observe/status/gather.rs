//! Gathering a [`ClusterStatus`]: every node is asked in parallel, local
//! nodes over their socket as the superuser, nodes on other hosts over TCP
//! as the replication role. A [`Gatherer`] keeps its connections between
//! snapshots, so a monitor loop costs a few queries, not new backends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::published::{overlay, Published};
use super::{lag, ArchiveStatus, ClusterStatus, Conflicts, Lag, NodeStatus, Replication, SlotStatus};
use crate::config::{Node, Role};
use crate::domain::lsn::Lsn;
use crate::domain::time::{now_unix, rfc3339};
use crate::error::{Error, Result};
use crate::pg::datadir;
use crate::store::ctx::Ctx;

/// Takes snapshots, reusing connections.
pub(crate) struct Gatherer {
    ctx: Arc<Ctx>,
    conns: Vec<Arc<Mutex<Option<Conn>>>>,
    /// Per node: it runs on this host.
    here: Vec<bool>,
    /// An observing command (not the supervisor): log in as `[monitor] role`
    /// where one is set, rather than as the superuser over the socket.
    observer: bool,
    /// Per node: a probe an earlier snapshot stopped waiting for, left to
    /// finish (or time out) on its own; the next snapshot takes its answer.
    pending: Vec<Arc<std::sync::Mutex<Option<JoinHandle<Probed>>>>>,
    /// Per node: it was unresponsive in the last snapshot.
    silent: Vec<Arc<AtomicBool>>,
}

/// One node's answer, and the raw rows behind it.
type Probed = (NodeStatus, Option<Raw>);

/// How long a snapshot waits for a node that was unresponsive in the last
/// one. Waiting out the full [`PROBE_TIMEOUT`] each time would make every
/// snapshot, and so every HA decision, as slow as the frozen node: the
/// others' answers would be two seconds old. A probe still running after
/// this keeps running, and the next snapshot takes its answer.
const SILENT_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// A kept connection and the statements prepared on it: each tick runs the
/// same few queries, so the server parses and plans them once per
/// connection, not once per second (the monitor's idle cost, issue #17).
pub(crate) struct Conn {
    client: Client,
    prepared: std::collections::HashMap<&'static str, tokio_postgres::Statement>,
    /// Queries asked on this connection: every [`SLOW_EVERY`]th (the first
    /// included) asks for the slow figures.
    ticks: u64,
    /// The slow figures from the last time they were asked, and when.
    slow: Option<(std::time::Instant, Conflicts, Vec<String>)>,
}

impl Conn {
    fn new(client: Client) -> Self {
        Conn { client, prepared: std::collections::HashMap::new(), ticks: 0, slow: None }
    }

    /// The statement for `key`, prepared on first use.
    async fn stmt(
        &mut self,
        key: &'static str,
        sql: &str,
    ) -> std::result::Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(s) = self.prepared.get(key) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.prepared.insert(key, s.clone());
        Ok(s)
    }
}

/// What one node said about itself (and, on a primary, its replicas and slots).
struct Raw {
    standby: bool,
    current: Option<Lsn>,
    received: Option<Lsn>,
    replayed: Option<Lsn>,
    timeline: Option<i32>,
    replay_ts: Option<f64>,
    receiver: Option<String>,
    pending_restart: Vec<String>,
    /// Seconds since `conflicts` and `pending_restart` were asked.
    slow_age: Option<f64>,
    /// A standby's `primary_conninfo` (or its WAL receiver's, when connected).
    conninfo: Option<String>,
    idle_slots: Option<Vec<String>>,
    conflicts: Conflicts,
    rows: Vec<Row>,
    slots: Vec<SlotStatus>,
    archiver: Option<ArchiveStatus>,
}

/// One `pg_stat_replication` row.
struct Row {
    app: String,
    state: Option<String>,
    sync_state: Option<String>,
    lsns: [Option<Lsn>; 4],
    secs: [Option<f64>; 3],
    ssl: Option<bool>,
}

/// The node query. `$1` asks for the slow-changing figures too (recovery
/// conflicts, settings waiting for a restart): they cost the server a scan
/// of every database's statistics and of every setting, so the monitor asks
/// for them every [`SLOW_EVERY`] ticks and carries them in between; what
/// decisions rest on (role, LSNs, timeline, WAL receiver, upstream) is asked
/// every tick.
const NODE_SQL: &str = "
WITH w AS (SELECT status, received_tli FROM pg_stat_wal_receiver)
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       -- A promoted primary still reports what it received as a standby; that is not its position.
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM w)
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       extract(epoch FROM pg_last_xact_replay_timestamp())::float8,
       (SELECT status FROM w),
       CASE WHEN $1::bool THEN (SELECT ARRAY[coalesce(sum(confl_tablespace), 0), coalesce(sum(confl_lock), 0),
                                             coalesce(sum(confl_snapshot), 0), coalesce(sum(confl_bufferpin), 0),
                                             coalesce(sum(confl_deadlock), 0)]::int8[]
                                FROM pg_stat_database_conflicts) END,
       current_setting('server_version_num')::int,
       CASE WHEN $1::bool THEN ARRAY(SELECT name::text FROM pg_settings WHERE pending_restart ORDER BY name) END,
       -- Where a standby streams from: its live connection, else its setting (12+).
       -- Both are hidden from (not an error for) a role without pg_read_all_settings.
       CASE WHEN pg_is_in_recovery() THEN coalesce((SELECT conninfo FROM pg_stat_wal_receiver),
                                                   (SELECT setting FROM pg_settings WHERE name = 'primary_conninfo')) END,
       -- A standby's idle physical slots: left from when it was primary, they only hold WAL back.
       CASE WHEN pg_is_in_recovery() THEN ARRAY(SELECT slot_name::text FROM pg_replication_slots
                                                WHERE slot_type = 'physical' AND NOT active ORDER BY 1) END";

/// How many ticks apart the slow-changing figures are asked for.
pub(crate) const SLOW_EVERY: u64 = 10;

const REPLICATION_SQL: &str = "
SELECT application_name, state, sync_state, sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
       extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, extract(epoch FROM replay_lag)::float8,
       (SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = r.pid)
FROM pg_stat_replication r";

fn slots_sql(major: u32) -> String {
    let (status, safe) = if major >= 13 { ("wal_status", "safe_wal_size") } else { ("NULL::text", "NULL::int8") };
    format!(
        "SELECT slot_name::text, active, {status}, (pg_current_wal_lsn() - restart_lsn)::int8, {safe}
         FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name"
    )
}

/// Every query one snapshot sends, by name, for a server of `major`, with
/// the node query's `$1` where it takes one: the node query (every node;
/// with the slow figures one tick in [`SLOW_EVERY`]), then the primary's
/// replication, archiver and slot queries. For `cargo bench --bench
/// observe`'s per-query cost table.
pub fn probe_queries(major: u32) -> Vec<(&'static str, String, Option<bool>)> {
    vec![
        ("node", NODE_SQL.to_string(), Some(false)),
        ("node + slow figures", NODE_SQL.to_string(), Some(true)),
        ("replication (primary)", REPLICATION_SQL.to_string(), None),
        ("archiver (primary)", ARCHIVER_SQL.to_string(), None),
        ("slots (primary)", slots_sql(major), None),
    ]
}

const ARCHIVER_SQL: &str = "SELECT archived_count, last_archived_wal, extract(epoch FROM last_archived_time)::float8,
                        failed_count, last_failed_wal, extract(epoch FROM last_failed_time)::float8
                 FROM pg_stat_archiver";

fn lsn(s: Option<String>) -> Option<Lsn> {
    s.and_then(|s| s.parse().ok())
}

async fn query(conn: &mut Conn) -> std::result::Result<Raw, tokio_postgres::Error> {
    let node = conn.stmt("node", NODE_SQL).await?;
    let slow_tick = conn.ticks % SLOW_EVERY == 0 || conn.slow.is_none();
    conn.ticks += 1;
    let r = conn.client.query_one(&node, &[&slow_tick]).await?;
    let standby: bool = r.get(0);
    // Each server's own version decides its catalog columns.
    let major = u32::try_from(r.get::<_, i32>(8) / 10000).unwrap_or(0);
    let fresh = r.get::<_, Option<Vec<i64>>>(7).zip(r.get::<_, Option<Vec<String>>>(9));
    if let Some((c, pending)) = fresh {
        let v = |i: usize| c.get(i).copied().unwrap_or(0);
        let conflicts = Conflicts {
            tablespace: v(0),
            lock: v(1),
            snapshot: v(2),
            bufferpin: v(3),
            deadlock: v(4),
            total: (0..5).map(v).sum(),
        };
        conn.slow = Some((std::time::Instant::now(), conflicts, pending));
    }
    let (conflicts, pending_restart, slow_age) = match &conn.slow {
        Some((at, c, p)) => (*c, p.clone(), Some(at.elapsed().as_secs_f64())),
        None => (Conflicts::default(), Vec::new(), None),
    };
    let mut raw = Raw {
        standby,
        current: lsn(r.get(1)),
        received: lsn(r.get(2)),
        replayed: lsn(r.get(3)),
        timeline: r.get(4),
        replay_ts: r.get(5),
        receiver: r.get(6),
        pending_restart,
        slow_age,
        conninfo: r.get(10),
        idle_slots: r.get(11),
        conflicts,
        rows: Vec::new(),
        slots: Vec::new(),
        archiver: None,
    };
    if !standby {
        let repl = conn.stmt("replication", REPLICATION_SQL).await?;
        for r in conn.client.query(&repl, &[]).await? {
            raw.rows.push(Row {
                app: r.get(0),
                state: r.get(1),
                sync_state: r.get(2),
                lsns: [lsn(r.get(3)), lsn(r.get(4)), lsn(r.get(5)), lsn(r.get(6))],
                secs: [r.get(7), r.get(8), r.get(9)],
                ssl: r.get(10),
            });
        }
        let archiver = conn.stmt("archiver", ARCHIVER_SQL).await?;
        let a = conn.client.query_one(&archiver, &[]).await?;
        let (ok_t, fail_t): (Option<f64>, Option<f64>) = (a.get(2), a.get(5));
        raw.archiver = Some(ArchiveStatus {
            archived_count: a.get(0),
            last_archived_wal: a.get(1),
            last_archived_time: ok_t.map(rfc3339),
            failed_count: a.get(3),
            last_failed_wal: a.get(4),
            last_failed_time: fail_t.map(rfc3339),
            failing: fail_t.is_some_and(|f| ok_t.is_none_or(|o| f > o)),
            ..ArchiveStatus::default()
        });
        let slots = conn.stmt("slots", &slots_sql(major)).await?;
        for r in conn.client.query(&slots, &[]).await? {
            let retained: Option<i64> = r.get(3);
            raw.slots.push(SlotStatus {
                slot: r.get(0),
                active: r.get(1),
                wal_status: r.get(2),
                retained_bytes: retained.and_then(|v| u64::try_from(v).ok()),
                safe_wal_size: r.get(4),
            });
        }
    }
    Ok(raw)
}

fn empty(node: &Node) -> NodeStatus {
    NodeStatus {
        name: node.name.clone(),
        host: node.host.clone(),
        port: node.port,
        role: None,
        state: crate::observe::status::NodeState::Unreachable,
        pid: None,
        timeline: None,
        current_lsn: None,
        received_lsn: None,
        replayed_lsn: None,
        last_replay_timestamp: None,
        wal_receiver: None,
        conflicts: None,
        replication: None,
        pending_restart: None,
        upstream: None,
        standby_slots: None,
        slow_figures_age_seconds: None,
        error: None,
    }
}

/// The node a standby's conninfo points at (by host and port), or the
/// `host:port` itself when no configured node has it.
fn upstream_of(cfg: &crate::config::Config, conninfo: &str) -> Option<String> {
    let field = |key: &str| {
        conninfo.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(|v| v.trim_matches('\'')))
    };
    let (host, port) = (field("host")?, field("port")?);
    let node = cfg.nodes.iter().find(|n| n.host == host && n.port.to_string() == port);
    Some(node.map_or_else(|| format!("{host}:{port}"), |n| n.name.clone()))
}

/// How long one node may take to answer a probe (connect and queries). A
/// node that does not answer in time is `unresponsive`; the others' answers
/// are not held up, so a frozen node never stalls the snapshot, the health
/// API, `status`, `check` or the HA loop.
pub(crate) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ask one node within [`PROBE_TIMEOUT`].
async fn one(
    ctx: Arc<Ctx>,
    node: Node,
    how: (bool, bool),
    conn: Arc<Mutex<Option<Conn>>>,
) -> (NodeStatus, Option<Raw>) {
    match tokio::time::timeout(PROBE_TIMEOUT, probe(ctx, node.clone(), how, conn.clone())).await {
        Ok(r) => r,
        Err(_) => {
            // The probe was dropped with its lock; its connection is stuck
            // on a server that does not answer, so it goes too.
            *conn.lock().await = None;
            (unresponsive(&node), None)
        }
    }
}

/// A node that did not answer its probe in time.
fn unresponsive(node: &Node) -> NodeStatus {
    let mut st = empty(node);
    st.state = crate::observe::status::NodeState::Unresponsive;
    st.pid = datadir::running_postmaster(&node.data_dir).map(|pf| pf.pid);
    st.error =
        Some(format!("did not answer within {}s: the server is frozen, hung or overloaded", PROBE_TIMEOUT.as_secs()));
    st
}

/// Node `i`'s answer for this snapshot. A probe left running by an earlier
/// snapshot is not doubled: its answer is taken if it has one, otherwise
/// the node is still unresponsive. A node that was unresponsive last time
/// is waited for only [`SILENT_GRACE`].
async fn answer(
    slot: Arc<std::sync::Mutex<Option<JoinHandle<Probed>>>>,
    was_silent: bool,
    node: Node,
    start: impl std::future::Future<Output = Probed> + Send + 'static,
) -> Probed {
    let running = slot.lock().map(|mut g| g.take()).unwrap_or(None);
    let mut probe = match running {
        Some(h) if h.is_finished() => return finished(h.await, &node),
        Some(h) => {
            if let Ok(mut g) = slot.lock() {
                *g = Some(h);
            }
            return (unresponsive(&node), None);
        }
        None => tokio::spawn(start),
    };
    // A probe bounds itself by PROBE_TIMEOUT; the margin lets it say so.
    let wait = if was_silent { SILENT_GRACE } else { PROBE_TIMEOUT + std::time::Duration::from_millis(500) };
    match tokio::time::timeout(wait, &mut probe).await {
        Ok(r) => finished(r, &node),
        Err(_) => {
            if let Ok(mut g) = slot.lock() {
                *g = Some(probe);
            }
            (unresponsive(&node), None)
        }
    }
}

fn finished(r: std::result::Result<Probed, tokio::task::JoinError>, node: &Node) -> Probed {
    r.unwrap_or_else(|e| {
        let mut st = empty(node);
        st.error = Some(format!("status probe failed: {e}"));
        (st, None)
    })
}

/// Ask one node, reusing (or re-opening) its connection. `here`: the node
/// runs on this host (its host is one of our addresses, and the data root is here).
async fn probe(
    ctx: Arc<Ctx>,
    node: Node,
    (here, observer): (bool, bool),
    conn: Arc<Mutex<Option<Conn>>>,
) -> (NodeStatus, Option<Raw>) {
    let mut st = empty(&node);
    // None: this user may not look (a monitoring user and a 0700 data root).
    let has_data = match std::fs::metadata(node.data_dir.join("PG_VERSION")) {
        Ok(_) => Some(true),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(_) => Some(false),
    };
    let local = has_data == Some(true);
    let mut guard = conn.lock().await;
    if has_data == Some(false) && here {
        // This host's node with no data: say so, rather than "error
        // connecting to server" from a TCP attempt.
        let staging = datadir::staging_path(&node.data_dir, "clone");
        st.state = crate::observe::status::NodeState::Stopped;
        st.error = Some(if staging.exists() {
            format!("no data dir yet: being cloned into {}", staging.display())
        } else {
            format!(
                "its data dir {} does not exist (removed?); `pgrepl reclone {}` makes a fresh copy",
                node.data_dir.display(),
                node.name
            )
        });
        *guard = None;
        return (st, None);
    }
    if local {
        match datadir::running_postmaster(&node.data_dir) {
            None => {
                st.state = crate::observe::status::NodeState::Stopped;
                *guard = None;
                return (st, None);
            }
            Some(pf) => st.pid = Some(pf.pid),
        }
    }
    if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
        // The supervisor and root use the socket for local nodes; otherwise
        // `[monitor] role` when set (no superuser, no replication secret),
        // else the replication role.
        let c = match (local && !observer, ctx.connect_monitor(&node).await) {
            (true, _) => ctx.connect(&node).await,
            (false, Some(c)) => c,
            (false, None) if local => ctx.connect(&node).await,
            (false, None) => ctx.connect_remote(&node).await,
        };
        match c {
            Ok(c) => *guard = Some(Conn::new(c)),
            Err(e) => {
                st.error = Some(e.to_string());
                return (st, None);
            }
        }
    }
    let Some(conn) = guard.as_mut() else { return (st, None) };
    match query(conn).await {
        Ok(raw) => {
            st.state = crate::observe::status::NodeState::Running;
            st.role = Some(if raw.standby { Role::Replica } else { Role::Primary });
            st.timeline = raw.timeline;
            st.current_lsn = raw.current;
            st.received_lsn = raw.received;
            st.replayed_lsn = raw.replayed;
            st.last_replay_timestamp = raw.replay_ts.map(rfc3339);
            st.wal_receiver = raw.receiver.clone();
            st.conflicts = Some(raw.conflicts);
            st.pending_restart = Some(raw.pending_restart.clone());
            st.slow_figures_age_seconds = raw.slow_age.map(|a| (a * 1000.0).round() / 1000.0);
            st.upstream = raw.conninfo.as_deref().and_then(|c| upstream_of(&ctx.cfg, c));
            st.standby_slots = raw.idle_slots.clone();
            (st, Some(raw))
        }
        Err(e) => {
            st.error = Some(Error::sql("querying", e).to_string());
            *guard = None;
            (st, None)
        }
    }
}

impl Gatherer {
    /// A gatherer for every configured node (no connections yet).
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        let conns = ctx.cfg.nodes.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let addrs = crate::store::local::local_addresses();
        let root = ctx.layout.root.exists();
        let here = ctx.cfg.nodes.iter().map(|n| root && crate::store::local::is_local(&n.host, &addrs)).collect();
        let n = ctx.cfg.nodes.len();
        let pending = (0..n).map(|_| Arc::new(std::sync::Mutex::new(None))).collect();
        let silent = (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect();
        Gatherer { ctx, conns, here, observer: false, pending, silent }
    }

    /// A gatherer for `status`, `check` and `monitor`: as [`Gatherer::new`],
    /// logging in as `[monitor] role` when the config sets one.
    pub(crate) fn observer(ctx: Arc<Ctx>) -> Self {
        let observer = ctx.cfg.monitor.role.is_some();
        Gatherer { observer, ..Gatherer::new(ctx) }
    }

    /// One snapshot of every node, asked in parallel.
    pub(crate) async fn gather(&self) -> Result<ClusterStatus> {
        let timestamp = rfc3339(now_unix());
        let mut set = tokio::task::JoinSet::new();
        for (i, n) in self.ctx.cfg.nodes.iter().enumerate() {
            let (ctx, n, c) = (self.ctx.clone(), n.clone(), self.conns[i].clone());
            let how = (self.here[i], self.observer);
            let (slot, was_silent) = (self.pending[i].clone(), self.silent[i].load(Ordering::Relaxed));
            set.spawn(async move { (i, answer(slot, was_silent, n.clone(), one(ctx, n, how, c)).await) });
        }
        let mut results = Vec::new();
        while let Some(r) = set.join_next().await {
            results.push(r.map_err(|e| Error::Other(format!("status task failed: {e}")))?);
        }
        results.sort_by_key(|r| r.0);
        for (i, (st, _)) in &results {
            self.silent[*i].store(st.state == crate::observe::status::NodeState::Unresponsive, Ordering::Relaxed);
        }
        let (statuses, raws): (Vec<NodeStatus>, Vec<Option<Raw>>) = results.into_iter().map(|(_, r)| r).unzip();
        let primary_raw = raws.iter().flatten().find(|r| !r.standby);
        let nodes: Vec<NodeStatus> = statuses
            .into_iter()
            .map(|mut st| {
                if let Some(p) = primary_raw {
                    st.replication = p.rows.iter().find(|r| r.app == st.name).map(|row| replication(p.current, row));
                }
                st
            })
            .collect();
        // A monitoring user may not read the data root: then the record is
        // unknown to it (not broken), and the primary is the one observed.
        let (state, mut state_error, readable) = match self.ctx.store().load() {
            Ok(s) => (s, None, true),
            Err(crate::error::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                (crate::store::state::State::default(), None, false)
            }
            Err(e) => (crate::store::state::State::default(), Some(e.to_string()), true),
        };
        let observed: Vec<&NodeStatus> = nodes.iter().filter(|n| n.is_writable_primary()).collect();
        let primary = match (readable, observed.as_slice()) {
            (false, [one]) => one.name.clone(),
            _ => match crate::store::view::ClusterView::of(&self.ctx.cfg, &state) {
                Ok(v) => v.primary.name,
                // A record naming a node the config lacks is reported like
                // an unreadable one; the rows still need an order.
                Err(e) => {
                    state_error.get_or_insert(e.to_string());
                    self.ctx.cfg.bootstrap_primary().name.clone()
                }
            },
        };
        // The supervisor's files mean something only while it runs.
        let supervised = crate::store::lock::holder(&self.ctx.layout).is_some();
        let run_file = |p: std::path::PathBuf| supervised.then(|| std::fs::read_to_string(p).ok()).flatten();
        let ha = run_file(self.ctx.layout.ha_file());
        let archive = self.ctx.cfg.archive.as_ref().map(|dir| ArchiveStatus {
            dir: dir.display().to_string(),
            size_bytes: crate::pg::fsutil::dir_size(dir),
            ..primary_raw.and_then(|p| p.archiver.clone()).unwrap_or_default()
        });
        let mut st = ClusterStatus {
            cluster: self.ctx.cfg.cluster_name.clone(),
            timestamp,
            primary,
            ha,
            last_move: state.last_move,
            paused: state.paused,
            needs_reclone: state.needs_reclone,
            fenced: state.fenced,
            settling: settling(&self.ctx.layout.settling_file()),
            state_error,
            durability: run_file(self.ctx.layout.durability_file()).and_then(|t| serde_json::from_str(&t).ok()),
            archive,
            nodes,
            slots: primary_raw.map(|p| p.slots.clone()).unwrap_or_default(),
            silent_agents: Vec::new(),
        };
        // Across hosts, what only a node's own host can read comes from
        // its member key. Unreachable etcd leaves the direct probes (and
        // the record's error says why).
        if self.ctx.cfg.etcd.is_some() {
            let ctx = self.ctx.clone();
            if let Ok(Ok(members)) = tokio::task::spawn_blocking(move || ctx.members()).await {
                let published: Vec<Published> =
                    members.iter().filter_map(|(_, json)| serde_json::from_str(json).ok()).collect();
                overlay(&mut st, &self.here, &published);
            }
        }
        Ok(st)
    }
}

/// The settling note, while it lasts.
fn settling(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let (until, why) = text.split_once('\n')?;
    (until.trim().parse::<f64>().ok()? > now_unix()).then(|| why.trim().to_string())
}

fn replication(current: Option<Lsn>, row: &Row) -> Replication {
    let (sb, _) = lag(current, row.lsns[0], None);
    let (wb, ws) = lag(current, row.lsns[1], row.secs[0]);
    let (fb, fs) = lag(current, row.lsns[2], row.secs[1]);
    let (rb, rs) = lag(current, row.lsns[3], row.secs[2]);
    Replication {
        state: row.state.clone(),
        sync_state: row.sync_state.clone(),
        sent_lsn: row.lsns[0],
        write_lsn: row.lsns[1],
        flush_lsn: row.lsns[2],
        replay_lsn: row.lsns[3],
        send_lag_bytes: sb,
        lag_bytes: Lag { write: wb, flush: fb, replay: rb },
        lag_seconds: Lag { write: ws, flush: fs, replay: rs },
        ssl: row.ssl,
    }
}

/// One snapshot with fresh connections (for one-shot commands).
pub(crate) async fn gather_once(ctx: &Arc<Ctx>) -> Result<ClusterStatus> {
    Gatherer::new(ctx.clone()).gather().await
}
