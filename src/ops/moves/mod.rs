//! Moving the primary: switchover, failover, rejoin and reclone, and the
//! steps they share (promote, repoint, slots). Each step is printed as it
//! happens and has a bounded timeout. Which node is primary now is runtime
//! state (`state.primary`), written atomically right after a promotion.

pub(crate) mod across;
pub(crate) mod failover;
pub(crate) mod history;
pub(crate) mod rejoin;
pub(crate) mod restart;
pub(crate) mod switchover;

use std::time::Duration;

use crate::config::{slot_name_for, Node, Role};
use crate::domain::lsn::Lsn;
use crate::error::{Error, Result};
use crate::ops::configure::write_node_files;
use crate::ops::control::Control;
use crate::output::Output;
use crate::pg::sql;
use crate::store::ctx::Ctx;
use crate::store::state::State;

/// Numbered progress lines.
pub(crate) struct Steps<'a> {
    out: &'a Output,
    n: u32,
}

impl<'a> Steps<'a> {
    pub(crate) fn new(out: &'a Output) -> Self {
        Steps { out, n: 0 }
    }
    pub(crate) fn step(&mut self, msg: impl AsRef<str>) {
        self.n += 1;
        self.out.info(format!("step {}: {}", self.n, msg.as_ref()));
    }
    pub(crate) fn say(&self, msg: impl AsRef<str>) {
        self.out.info(msg);
    }
}

/// Poll `f` every 50 ms until it yields `Some`, or fail with `what` at the deadline.
pub(crate) async fn until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    crate::domain::deadline::poll(timeout, Duration::from_millis(50), &mut f)
        .await
        .map_err(|_| Error::Timeout(format!("{what} did not happen within {}s", timeout.as_secs())))
}

/// One value from a node, or None if it cannot be asked.
async fn ask_lsn(ctx: &Ctx, node: &Node, q: &str) -> Option<Lsn> {
    let c = ctx.connect(node).await.ok()?;
    let row = c.query_one(q, &[]).await.ok()?;
    row.get::<_, Option<String>>(0)?.parse().ok()
}

/// Wait until `node` has replayed past `lsn`.
pub(crate) async fn wait_replayed_past(ctx: &Ctx, node: &Node, lsn: Lsn, timeout: Duration) -> Result<Lsn> {
    wait_replayed_to(ctx, node, Lsn(lsn.0 + 1), timeout).await
}

/// Wait until `node` has replayed up to `lsn` (or beyond).
pub(crate) async fn wait_replayed_to(ctx: &Ctx, node: &Node, lsn: Lsn, timeout: Duration) -> Result<Lsn> {
    until(timeout, &format!("{} replaying up to {lsn}", node.name), || async {
        ask_lsn(ctx, node, "SELECT pg_last_wal_replay_lsn()::text").await.filter(|r| *r >= lsn)
    })
    .await
}

/// Promote `node` and wait until it accepts writes.
pub(crate) async fn promote(ctx: &Ctx, node: &Node, timeout: Duration) -> Result<()> {
    // The standbys' slots first, while it is still a standby (physical
    // slots can be made there): a standby repointed to it then streams the
    // moment it opens, instead of failing on a missing slot and retrying
    // only after wal_retrieve_retry_interval (5 s), which in sync-strict
    // holds every commit that long. A failure here does not stop the
    // promotion: every caller makes the slots again after it, and says so.
    let _ = ensure_slots(ctx, node).await;
    let c = ctx.connect(node).await?;
    protect_first_commit(ctx, node, &c).await?;
    if ctx.bin()?.major >= 12 {
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(60);
        let ok: bool = c
            .query_one("SELECT pg_promote(true, $1)", &[&secs])
            .await
            .map_err(|e| Error::sql(format!("promoting {}", node.name), e))?
            .get(0);
        if !ok {
            return Err(Error::Timeout(format!(
                "{} did not finish promotion within {}s",
                node.name,
                timeout.as_secs()
            )));
        }
    } else {
        let mut cmd = crate::pg::process::command(ctx.bin()?, &ctx.runas, "pg_ctl");
        cmd.arg("promote").arg("-D").arg(&node.data_dir);
        crate::pg::process::run_captured(cmd, "pg_ctl promote").await?;
    }
    until(timeout, &format!("{} accepting writes", node.name), || async {
        let c = ctx.connect(node).await.ok()?;
        let r = c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
        (!r.get::<_, bool>(0)).then_some(())
    })
    .await
}

/// Give `node`, still a standby, the `synchronous_standby_names` it needs as
/// a primary, and wait until new sessions run with it. It may have inherited
/// anything (pg_rewind and base backups copy postgresql.auto.conf): an empty
/// list in sync-strict would acknowledge commits no standby holds until the
/// durability task's next look, and CI once saw a stale list stay a minute.
async fn protect_first_commit(ctx: &Ctx, node: &Node, c: &tokio_postgres::Client) -> Result<()> {
    let r = &ctx.cfg.replication;
    let others: Vec<String> = ctx.cfg.nodes.iter().filter(|n| n.name != node.name).map(|n| n.name.clone()).collect();
    let names = crate::domain::durability::at_promotion(r.durability, r.sync_count, &others);
    let what = format!("setting synchronous_standby_names on {} before its promotion", node.name);
    let now: String =
        c.query_one("SHOW synchronous_standby_names", &[]).await.map_err(|e| Error::sql(&what, e))?.get(0);
    if now == names {
        return Ok(());
    }
    for q in sql::set_standby_names(&names) {
        c.batch_execute(&q).await.map_err(|e| Error::sql(&what, e))?;
    }
    // The postmaster reads the file on SIGHUP and passes it on; a new
    // session seeing the value is the sign that it has.
    until(Duration::from_secs(10), &format!("{} running with the new standby list", node.name), || async {
        let c = ctx.connect(node).await.ok()?;
        let now: String = c.query_one("SHOW synchronous_standby_names", &[]).await.ok()?.get(0);
        (now == names).then_some(())
    })
    .await
}

/// CHECKPOINT on `node`. Before pg_rewind reads a just-promoted source: a
/// promotion does not wait for its checkpoint, and until one runs the
/// source's control file still names the old timeline, so pg_rewind would
/// wrongly see "the same timeline, no rewind required".
///
/// Across hosts only the node's own agent reaches it as the superuser: a
/// new leader checkpoints right after its promotion, and a call from
/// another host waits, over TCP, until that checkpoint is in its control
/// file (the checkpoint's timeline is the one it writes on). Without the
/// wait, an old primary rejoining the moment the record names the new one
/// was rewound from a server still promoting: pg_rewind read the old
/// timeline and copied 100 MB where nothing had diverged.
pub(crate) async fn checkpoint(ctx: &Ctx, node: &Node) -> Result<()> {
    if ctx.cfg.etcd.is_some() && !ctx.is_here(node) {
        let settled = "SELECT NOT pg_is_in_recovery() AND timeline_id::bigint = ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint FROM pg_control_checkpoint()";
        let what = format!("{}'s checkpoint on its new timeline", node.name);
        return until(Duration::from_secs(30), &what, || async {
            let c = ctx.connect_remote(node).await.ok()?;
            c.query_one(settled, &[]).await.ok()?.get::<_, Option<bool>>(0).filter(|ok| *ok).map(|_| ())
        })
        .await;
    }
    let c = ctx.connect(node).await?;
    c.batch_execute("CHECKPOINT").await.map_err(|e| Error::sql(format!("checkpoint on {}", node.name), e))
}

/// How long after a move or restart pgrepl made `check` reports the
/// replicas it disturbed as settling (a WARNING) rather than CRITICAL: a
/// standby takes a moment to reconnect and show up in pg_stat_replication.
pub(crate) const SETTLE: Duration = Duration::from_secs(15);

/// Note that `why` (say "restart of pg-2") just happened, for `check`.
pub(crate) fn settling(ctx: &Ctx, why: &str) {
    let until = crate::domain::time::now_unix() + SETTLE.as_secs_f64();
    let text = format!("{until}\n{why}");
    // Only a softer verdict for a few seconds rides on this; a failure to
    // write it leaves `check` as strict as before.
    let _ = crate::pg::fsutil::create_dir(&ctx.layout.run_dir(), 0o755)
        .and_then(|()| crate::pg::fsutil::write_atomic(&ctx.layout.settling_file(), text.as_bytes(), 0o644));
}

/// Record `node` as the primary, with the reason, atomically.
pub(crate) fn record_primary(ctx: &Ctx, node: &Node, why: &str) -> Result<()> {
    ctx.store().update(|st| {
        st.primary = Some(node.name.clone());
        st.last_move = Some(why.to_string());
        st.needs_reclone.retain(|n| *n != node.name);
        st.fenced.retain(|n| *n != node.name);
    })
}

/// Mark or clear a node as fenced (a former primary waiting to rejoin).
pub(crate) fn set_fenced(ctx: &Ctx, node: &Node, on: bool) -> Result<()> {
    update_list(ctx, node, on, |st| &mut st.fenced)
}

/// Mark or clear a node's `needs-reclone` state.
pub(crate) fn set_needs_reclone(ctx: &Ctx, node: &Node, on: bool) -> Result<()> {
    update_list(ctx, node, on, |st| &mut st.needs_reclone)
}

/// Add `node` to (or remove it from) one of the state's node lists.
fn update_list(ctx: &Ctx, node: &Node, on: bool, list: impl Fn(&mut State) -> &mut Vec<String>) -> Result<()> {
    ctx.store().update(|st| {
        let l = list(st);
        l.retain(|n| *n != node.name);
        if on {
            l.push(node.name.clone());
        }
    })
}

/// pg_rewind `node` from `primary`, as the OS user: through the primary's
/// socket when it runs here, else over TCP as the rewind role.
pub(crate) async fn rewind_from(
    ctx: &Ctx,
    node: &Node,
    primary: &Node,
    dry_run: bool,
) -> Result<crate::pg::rewind::Rewound> {
    use crate::pg::rewind::Source;
    let source = if ctx.cfg.etcd.is_some() && !ctx.is_here(primary) {
        let mut extra = vec![("passfile", ctx.layout.passfile().to_string_lossy().into_owned())];
        if let Some(t) = &ctx.cfg.tls {
            extra.extend(crate::pg::tls::libpq_params(t, &ctx.layout.root_cert()));
        }
        Source::tcp(&primary.host, primary.port, &extra)
    } else {
        Source::socket(&ctx.layout.socket_dir(), primary.port, &ctx.runas.name)
    };
    crate::pg::rewind::rewind(ctx.bin()?, &ctx.runas, &node.data_dir, &source, dry_run).await
}

/// Slots on `primary` for every other node, before they need them.
///
/// Across hosts, only the primary's own agent reaches it as the superuser
/// (through its socket): it makes the slots when it becomes the leader, and
/// a call from another host leaves them to it.
pub(crate) async fn ensure_slots(ctx: &Ctx, primary: &Node) -> Result<()> {
    if ctx.cfg.etcd.is_some() && !ctx.is_here(primary) {
        return Ok(());
    }
    let c = ctx.connect(primary).await?;
    if ctx.bin()?.major >= 13 {
        // A lost slot can never stream again; a fresh one replaces it.
        c.batch_execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE wal_status = 'lost' AND NOT active")
            .await
            .map_err(|e| Error::sql("dropping lost slots", e))?;
    }
    for n in ctx.cfg.nodes.iter().filter(|n| n.name != primary.name) {
        if let Some(slot) = slot_name_for(&ctx.cfg, n) {
            sql::ensure_slot(&c, &slot).await?;
        }
    }
    // Slots pgrepl made for standbys that are no longer in the config go
    // (only ours, never a slot someone else created).
    let wanted: Vec<String> =
        ctx.cfg.nodes.iter().filter(|n| n.name != primary.name).filter_map(|n| slot_name_for(&ctx.cfg, n)).collect();
    let ours = ctx.update_bookkeeping(|b| {
        for w in &wanted {
            if !b.slots_created.contains(w) {
                b.slots_created.push(w.clone());
            }
        }
        b.slots_created.clone()
    })?;
    for gone in ours.iter().filter(|s| !wanted.contains(s) && slot_name_for(&ctx.cfg, primary).as_ref() != Some(*s)) {
        let n = c
            .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", &[gone])
            .await
            .map_err(|e| Error::sql(format!("dropping slot {gone} of a removed standby"), e))?;
        if n > 0 {
            ctx.update_bookkeeping(|b| b.slots_created.retain(|s| s != gone))?;
        }
    }
    // Its own slot, from when it was a replica of someone else, must go.
    if let Some(own) = slot_name_for(&ctx.cfg, primary) {
        c.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
            &[&own],
        )
        .await
        .map_err(|e| Error::sql("dropping the new primary's own slot", e))?;
    }
    Ok(())
}

/// Drop inactive slots on a node that is now a standby (left from when it
/// was primary): only pgrepl's own (named after a configured node).
pub(crate) async fn drop_stale_slots(ctx: &Ctx, node: &Node) -> Result<()> {
    let c = ctx.connect(node).await?;
    let ours: Vec<String> = ctx.cfg.nodes.iter().map(|n| crate::config::slot_name(&n.name)).collect();
    c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active AND slot_type = 'physical' AND slot_name = ANY($1)", &[&ours])
        .await
        .map_err(|e| Error::sql(format!("dropping stale slots on {}", node.name), e))?;
    Ok(())
}

/// After a move, the standbys other than `old` follow the new primary
/// `target`. The move is done whatever happens here: a replica that cannot
/// be repointed now (frozen, say) is repointed by the supervisor when it
/// answers, and one that does not stream (replay paused, say) is reported,
/// not a failed move.
pub(crate) async fn others_follow(ctx: &Ctx, control: &Control, old: &Node, target: &Node, steps: &mut Steps<'_>) {
    let others: Vec<&Node> = ctx.cfg.nodes.iter().filter(|n| n.name != old.name && n.name != target.name).collect();
    if !others.is_empty() {
        steps.step(format!(
            "repointing {} to {}",
            others.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
            target.name
        ));
    }
    for n in &others {
        if crate::pg::datadir::running_postmaster(&n.data_dir).is_some() {
            // The move is done; the supervisor repoints a replica that cannot be now.
            if let Err(e) = repoint(ctx, control, n, target).await {
                steps.say(format!(
                    "warning: repointing {} failed ({e}); the supervisor repoints it when it answers",
                    n.name
                ));
            }
        }
    }
    for n in ctx.cfg.nodes.iter().filter(|n| n.name != target.name) {
        if crate::pg::datadir::running_postmaster(&n.data_dir).is_some() {
            if let Err(e) = crate::ops::wait::wait_streaming(ctx, n, target).await {
                steps.say(format!("warning: {e}; check it with `pgrepl status`"));
            }
        }
    }
}

/// Point a running replica at `primary`: rewrite its standby settings, then
/// reload (PostgreSQL 13+ applies `primary_conninfo` on reload) or restart.
pub(crate) async fn repoint(ctx: &Ctx, control: &Control, node: &Node, primary: &Node) -> Result<()> {
    write_node_files(ctx, node, &node.data_dir, Role::Replica, primary)?;
    if ctx.bin()?.major >= 13 {
        let c = ctx.connect(node).await?;
        c.batch_execute("SELECT pg_reload_conf()")
            .await
            .map_err(|e| Error::sql(format!("reloading {}", node.name), e))?;
    } else {
        control.stop(ctx, node, crate::pg::process::StopMode::Fast).await?;
        control.start(ctx, node).await?;
    }
    Ok(())
}
