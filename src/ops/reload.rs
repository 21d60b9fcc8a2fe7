//! Applying a changed pgrepl.toml to a running cluster, as `patronictl
//! reload` and `restart` do: `pgrepl reload` rewrites every running local
//! node's config files, applies roles, passwords, databases and slots on the
//! primary, reloads PostgreSQL, and names the settings that wait for a
//! restart; `pgrepl restart` restarts nodes one at a time, replicas first.

use std::time::Duration;

use crate::config::{Node, Role};
use crate::error::{Error, Result};
use crate::ops::control::{wait_move_lock, Control};
use crate::output::Output;
use crate::pg::datadir;
use crate::store::ctx::Ctx;

/// The local nodes with a running postmaster, primary first.
fn running_nodes(ctx: &Ctx) -> Vec<Node> {
    let local = crate::store::local::local_addresses();
    // Only the order: primary first.
    let primary = crate::store::view::ClusterView::read_for_display(ctx).primary.name;
    let mut nodes: Vec<Node> = ctx
        .cfg
        .nodes
        .iter()
        .filter(|n| crate::store::local::is_local(&n.host, &local))
        .filter(|n| datadir::running_postmaster(&n.data_dir).is_some())
        .cloned()
        .collect();
    nodes.sort_by_key(|n| n.name != primary);
    nodes
}

/// Reload `node` and return the settings that wait for a restart. The
/// postmaster rereads its files a moment after `pg_reload_conf()`, and
/// backends started after that inherit the result, so a fresh connection
/// is asked until its config load time is newer than before the call.
async fn reload_node(ctx: &Ctx, node: &Node) -> Result<Vec<String>> {
    const LOADED: &str = "SELECT extract(epoch FROM pg_conf_load_time())::float8, \
         ARRAY(SELECT name::text FROM pg_settings WHERE pending_restart ORDER BY name)";
    let c = ctx.connect(node).await?;
    let err = |e| Error::sql(format!("reloading {}", node.name), e);
    let before: f64 = c.query_one(LOADED, &[]).await.map_err(err)?.get(0);
    c.batch_execute("SELECT pg_reload_conf()").await.map_err(err)?;
    drop(c);
    crate::ops::moves::until(Duration::from_secs(10), &format!("{} rereading its config", node.name), || async {
        let r = ctx.connect(node).await.ok()?.query_one(LOADED, &[]).await.ok()?;
        (r.get::<_, f64>(0) > before).then(|| r.get::<_, Vec<String>>(1))
    })
    .await
}

/// Changes to the cluster's shape that a reload cannot apply: a node added
/// or removed, or a running node's port changed (its standbys would follow
/// a port nothing listens on until a restart, and the supervisor would lose
/// sight of it). `supervised`: the nodes the supervisor runs, if one does.
pub(crate) fn shape_changes(ctx: &Ctx, supervised: Option<&[String]>) -> Vec<String> {
    let mut out = Vec::new();
    for n in &ctx.cfg.nodes {
        if let Some(port) = datadir::running_postmaster(&n.data_dir).and_then(|pf| pf.port) {
            if port != n.port {
                out.push(format!(
                    "node {} runs on port {port}, but the config now says {}: a new port takes `pgrepl down` then `pgrepl up`",
                    n.name, n.port
                ));
            }
        }
    }
    if let Some(sup) = supervised {
        let local = crate::store::local::local_addresses();
        for n in ctx.cfg.nodes.iter().filter(|n| crate::store::local::is_local(&n.host, &local)) {
            if !sup.contains(&n.name) {
                out.push(format!(
                    "node {} is new: add it without downtime with `pgrepl down --leave-running` then `pgrepl up`",
                    n.name
                ));
            }
        }
        for name in sup.iter().filter(|s| ctx.cfg.node(s).is_err()) {
            out.push(format!(
                "node {name} is no longer in the config: put it back, `pgrepl down {name}`, remove it again, then `pgrepl down --leave-running` and `pgrepl up`"
            ));
        }
    }
    out
}

/// `pgrepl reload` (`dry_run`: say what it would change, change nothing)
/// for this host's running nodes, or only `only` (a node's own agent,
/// asked from another host).
pub(crate) async fn reload(ctx: &Ctx, only: Option<&str>, dry_run: bool, out: &Output) -> Result<()> {
    let mut nodes = running_nodes(ctx);
    if let Some(name) = only {
        nodes.retain(|n| n.name == name);
    }
    if nodes.is_empty() {
        let what = only.map_or("no node of this host is running".to_string(), |n| format!("{n} is not running"));
        return Err(Error::Refused(format!("{what}; `pgrepl up` writes the config files when it starts a node")));
    }
    let supervised: Option<Vec<String>> = crate::store::lock::holder(&ctx.layout).map(|h| h.nodes);
    let changes = shape_changes(ctx, supervised.as_deref());
    if !changes.is_empty() {
        return Err(Error::Refused(format!(
            "reload refused, nothing changed: a reload applies settings, not the cluster's shape.\n{}",
            changes.join("\n")
        )));
    }
    if dry_run {
        let primary = crate::store::view::ClusterView::read(ctx)?.primary;
        return crate::ops::reload_plan::dry_run(ctx, &nodes, &primary, out).await;
    }
    // A move rewrites the same files; never interleave with one.
    let _lock = wait_move_lock(ctx, Duration::from_secs(60)).await?;
    let state = ctx.store().load()?;
    let primary = crate::store::view::ClusterView::read(ctx)?.primary;
    // A [[role]] naming a role that does not exist is refused before any file changes.
    if nodes.iter().any(|n| n.name == primary.name) {
        crate::ops::bootstrap::check_roles(ctx, &ctx.connect(&primary).await?).await?;
    }
    crate::ops::configure::write_client_files(ctx)?;
    let mut waiting = Vec::new();
    for n in &nodes {
        if state.fenced.contains(&n.name) || state.needs_reclone.contains(&n.name) {
            out.info(format!("{}: left alone (fenced or needs a re-clone)", n.name));
            continue;
        }
        let role = if n.name == primary.name { Role::Primary } else { Role::Replica };
        crate::ops::configure::write_node_files(ctx, n, &n.data_dir, role, &primary)?;
        if role == Role::Primary {
            // Roles, passwords, databases, schemas and slots, as `up` applies them.
            let mut st = state.clone();
            crate::ops::bootstrap::run(ctx, n, &mut st, out).await?;
        }
        let pending = reload_node(ctx, n).await?;
        if pending.is_empty() {
            out.info(format!("{}: reloaded", n.name));
        } else {
            out.info(format!(
                "{}: reloaded; {} take effect only after a restart: `pgrepl restart {}`",
                n.name,
                pending.join(", "),
                n.name
            ));
            waiting.push(n.name.clone());
        }
    }
    if let Some(note) = crate::ops::reload_plan::own_settings_note(ctx) {
        out.info(note);
    }
    if !waiting.is_empty() {
        out.info(format!("restart pending on {}", waiting.join(", ")));
    }
    Ok(())
}

/// Settings a hot standby needs at least as high as its primary's: a
/// standby started with less refuses to replay the primary's WAL.
const STANDBY_MINIMUMS: &str =
    "'max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction'";

/// Which of those settings the primary's files lower (file value below the
/// running one). Lowering must restart the primary first; raising, the
/// standbys first.
async fn lowered_on(ctx: &Ctx, primary: &Node) -> Result<Vec<String>> {
    let c = ctx.connect(primary).await?;
    // The last line for a name wins; a pending change is flagged "could not
    // be applied" there, so errors are not filtered out, only non-numbers.
    let q = format!(
        "SELECT name FROM (SELECT DISTINCT ON (f.name) f.name, f.setting AS file, s.setting AS running
                          FROM pg_file_settings f JOIN pg_settings s ON s.name = f.name
                          WHERE f.name IN ({STANDBY_MINIMUMS})
                          ORDER BY f.name, f.seqno DESC) x
         WHERE CASE WHEN file ~ '^[0-9]+$' THEN file::int8 < running::int8 ELSE false END ORDER BY name"
    );
    let rows = c.query(&q, &[]).await.map_err(|e| Error::sql("comparing settings with the files", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `pgrepl restart [NODE...]`: fast stop and start, one node at a time;
/// each replica must stream again before the next node goes down. Replicas
/// go first, unless the primary lowers a setting standbys need at least as
/// high as the primary's: then the primary goes first.
pub(crate) async fn restart(ctx: &Ctx, names: &[String], out: &Output) -> Result<()> {
    let control = Control::find(ctx)?;
    let primary = crate::store::view::ClusterView::read(ctx)?.primary;
    let mut nodes = if names.is_empty() {
        running_nodes(ctx)
    } else {
        names.iter().map(|n| ctx.cfg.node(n).cloned()).collect::<Result<Vec<_>>>()?
    };
    if nodes.is_empty() {
        return Err(Error::Refused("no node of this host is running; nothing to restart".into()));
    }
    let lowered = if nodes.iter().any(|n| n.name == primary.name) && nodes.len() > 1 {
        lowered_on(ctx, &primary).await?
    } else {
        Vec::new()
    };
    if lowered.is_empty() {
        nodes.sort_by_key(|n| n.name == primary.name);
    } else {
        out.info(format!(
            "the primary lowers {}: restarting it first, as standbys must never run with less than their primary",
            lowered.join(", ")
        ));
        nodes.sort_by_key(|n| n.name != primary.name);
    }
    // Held throughout: the HA task must not take a restarting primary for a
    // dead one and fail over.
    let _lock = wait_move_lock(ctx, Duration::from_secs(60)).await?;
    for n in &nodes {
        crate::ops::moves::restart::restart_node(ctx, &control, n, &primary, out).await?;
    }
    Ok(())
}
