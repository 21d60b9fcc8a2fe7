//! Everything `up` checks before it touches anything: that PostgreSQL can
//! reach the data root, that no port is held by a stranger, and what each
//! data dir holds. The result is a plan of one [`Action`] per node; any
//! refusal happens here, so a refused `up` has changed nothing on disk.

use std::net::TcpListener;

use crate::config::{Node, Role};
use crate::error::{Error, Result};
use crate::pg::datadir::{self, DirState};
use crate::store::ctx::Ctx;
use crate::store::state::State;

/// What `up` will do with one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Its data dir is ours and fine: just start it (or keep it running).
    Start,
    /// New primary: initdb, then bootstrap.
    Init,
    /// New replica: base backup from the primary. `move_aside` first moves
    /// the existing dir to `<dir>.old-<timestamp>` (`--reclone`).
    Clone { move_aside: bool },
}

/// One node's plan.
#[derive(Debug, Clone)]
pub(crate) struct NodePlan {
    pub node: Node,
    pub role: Role,
    pub action: Action,
}

/// Check everything and decide what to do, changing nothing.
pub(crate) async fn plan(ctx: &Ctx, selected: &[Node], reclone: &[String]) -> Result<Vec<NodePlan>> {
    ctx.bin()?;
    ctx.runas.check_reachable(&ctx.cfg.data_root)?;
    check_socket_path(ctx)?;
    let state = ctx.store().load()?;
    let primary = crate::store::view::ClusterView::of(&ctx.cfg, &state)?.primary;
    for name in reclone {
        let n = ctx.cfg.node(name)?;
        if n.name == primary.name {
            return Err(Error::Usage(format!(
                "--reclone {name}: {name} is the primary; only a replica can be re-cloned"
            )));
        }
    }
    let mut out = Vec::new();
    for node in selected {
        let role = if node.name == primary.name { Role::Primary } else { Role::Replica };
        let state_of_dir = datadir::inspect(&node.data_dir)?;
        let action = match role {
            Role::Primary => primary_action(ctx, node, &state_of_dir, &state)?,
            Role::Replica => {
                replica_action(ctx, node, &state_of_dir, &state, &primary, reclone.contains(&node.name)).await?
            }
        };
        if datadir::running_postmaster(&node.data_dir).is_none() {
            check_port(ctx, node)?;
        }
        check_api_port(ctx, node)?;
        out.push(NodePlan { node: node.clone(), role, action });
    }
    Ok(out)
}

/// Every problem `up` would refuse on, without changing anything and
/// without stopping at the first: for `pgrepl validate`. Each names its
/// place in the config (`file:line` of the node, or the file). Ports held by
/// this cluster's own running postmasters or supervisor are not problems.
pub(crate) async fn problems(ctx: &Ctx) -> Vec<String> {
    let file = ctx.cfg.path.display().to_string();
    let mut out = Vec::new();
    let mut global = |r: Result<()>| {
        if let Err(e) = r {
            out.push(format!("{file}: {e}"));
        }
    };
    global(ctx.bin().map(|_| ()));
    global(ctx.runas.check_reachable(&ctx.cfg.data_root));
    global(check_socket_path(ctx));
    let state = match ctx.store().load() {
        Ok(s) => s,
        Err(e) => {
            out.push(format!("{file}: {e}"));
            return out;
        }
    };
    let primary = match crate::store::view::ClusterView::read(ctx) {
        Ok(v) => v.primary,
        Err(e) => {
            out.push(format!("{file}: {e}"));
            return out;
        }
    };
    let supervised = crate::store::lock::holder(&ctx.layout).is_some();
    let addrs = crate::store::local::local_addresses();
    for node in ctx.cfg.nodes.iter().filter(|n| crate::store::local::is_local(&n.host, &addrs)) {
        let at = ctx.cfg.node_location(node);
        let mut check = |r: Result<()>| {
            if let Err(e) = r {
                out.push(format!("{at}: {e}"));
            }
        };
        let dir = datadir::inspect(&node.data_dir);
        let action = match dir {
            Err(e) => Err(e),
            Ok(d) if node.name == primary.name => primary_action(ctx, node, &d, &state).map(|_| ()),
            Ok(d) => replica_action(ctx, node, &d, &state, &primary, false).await.map(|_| ()),
        };
        check(action);
        if datadir::running_postmaster(&node.data_dir).is_none() {
            check(check_port(ctx, node));
        }
        if !supervised {
            check(check_api_port(ctx, node));
        }
    }
    out
}

fn check_socket_path(ctx: &Ctx) -> Result<()> {
    // sun_path is 108 bytes including the NUL; ".s.PGSQL.NNNNN.lock" is the longest name.
    let len = ctx.layout.socket_dir().as_os_str().len() + "/.s.PGSQL.65535.lock".len();
    if len > 107 {
        return Err(Error::Config {
            problems: vec![format!(
                "{}: data_root {} is too deep for Unix sockets (a socket path may be at most 107 bytes, this one would be {len}); use a shorter data_root",
                ctx.cfg.path.display(),
                ctx.cfg.data_root.display()
            )],
        });
    }
    Ok(())
}

fn check_port(ctx: &Ctx, node: &Node) -> Result<()> {
    free(ctx, node, &node.host, node.port)
}

/// The node's health API port, which the supervisor will bind.
fn check_api_port(ctx: &Ctx, node: &Node) -> Result<()> {
    if ctx.cfg.api.enabled {
        free(ctx, node, &ctx.cfg.api.listen, node.api_port)?;
    }
    Ok(())
}

/// The port is free, tested by binding it. A port held only for a moment
/// (another `up`'s own check, racing this one) is asked again for half a
/// second before it counts as taken.
fn free(ctx: &Ctx, node: &Node, host: &str, port: u16) -> Result<()> {
    for attempt in 0..10 {
        match TcpListener::bind((host, port)) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if attempt < 9 {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            // Not our address to bind (a host we do not have) is caught elsewhere.
            Err(_) => return Ok(()),
        }
    }
    Err(Error::PortInUse { node: node.name.clone(), host: host.to_string(), port, config: ctx.cfg.node_location(node) })
}

fn wrong_major(ctx: &Ctx, node: &Node, major: u32) -> Error {
    Error::UnsafeDataDir(format!(
        "node {}: data dir {} holds a PostgreSQL {major} cluster, but the binaries found are PostgreSQL {} ({}). pgrepl will not touch it. Point [cluster] postgres_bin at PostgreSQL {major}, or give node {} another data_dir",
        node.name,
        node.data_dir.display(),
        ctx.bin().map_or(0, |b| b.major),
        ctx.bin().map_or("?".into(), |b| b.dir.display().to_string()),
        node.name
    ))
}

fn primary_action(ctx: &Ctx, node: &Node, dir: &DirState, state: &State) -> Result<Action> {
    match dir {
        DirState::Missing | DirState::Empty if state.system_id.is_none() => Ok(Action::Init),
        DirState::Missing | DirState::Empty => Err(Error::UnsafeDataDir(format!(
            "node {} is the primary of cluster {} (system identifier {}), but its data dir {} is missing or empty. pgrepl will not create a new cluster over the record of an old one. If the old cluster is gone for good, move {} aside and run `pgrepl up` again",
            node.name,
            ctx.cfg.cluster_name,
            state.system_id.unwrap_or_default(),
            node.data_dir.display(),
            ctx.layout.state_file().display()
        ))),
        DirState::Postgres { major, .. } if *major != ctx.bin()?.major => Err(wrong_major(ctx, node, *major)),
        DirState::Postgres { system_id, .. } if state.system_id == Some(*system_id) => Ok(Action::Start),
        DirState::Postgres { system_id, .. } => Err(Error::UnsafeDataDir(format!(
            "node {}: data dir {} holds a PostgreSQL cluster that pgrepl did not create for cluster {} (its system identifier is {system_id}, pgrepl's record says {}). pgrepl will not touch it. Move it aside, or set data_dir for node {} to an empty directory",
            node.name,
            node.data_dir.display(),
            ctx.cfg.cluster_name,
            state.system_id.map_or("none".to_string(), |s| s.to_string()),
            node.name
        ))),
        DirState::Foreign => Err(not_a_data_dir(node)),
    }
}

fn not_a_data_dir(node: &Node) -> Error {
    Error::UnsafeDataDir(format!(
        "node {}: {} is not empty and is not a PostgreSQL data dir. pgrepl will not write into it. Empty it yourself, move it aside, or set another data_dir (`pgrepl up --reclone {}` moves it aside for a replica)",
        node.name,
        node.data_dir.display(),
        node.name
    ))
}

async fn replica_action(
    ctx: &Ctx,
    node: &Node,
    dir: &DirState,
    state: &State,
    primary: &Node,
    reclone: bool,
) -> Result<Action> {
    match dir {
        DirState::Missing | DirState::Empty => Ok(Action::Clone { move_aside: false }),
        _ if reclone => Ok(Action::Clone { move_aside: true }),
        DirState::Foreign => Err(not_a_data_dir(node)),
        DirState::Postgres { major, .. } if *major != ctx.bin()?.major => Err(wrong_major(ctx, node, *major)),
        DirState::Postgres { system_id, .. } => {
            let cluster_id = cluster_system_id(ctx, state, primary).await?;
            if cluster_id == Some(*system_id) {
                Ok(Action::Start)
            } else {
                Err(Error::UnsafeDataDir(format!(
                    "node {}: data dir {} belongs to a different cluster: its system identifier is {system_id}, the primary's ({}) is {}. Started, it would fail with \"database system identifier differs between the primary and standby\". Fix: `pgrepl up --reclone {}` moves the old dir aside (nothing is deleted) and clones a fresh copy",
                    node.name,
                    node.data_dir.display(),
                    primary.name,
                    cluster_id.map_or("none yet (this `up` creates the cluster)".to_string(), |s| s.to_string()),
                    node.name
                )))
            }
        }
    }
}

/// The cluster's system identifier: our record, else ask the primary.
async fn cluster_system_id(ctx: &Ctx, state: &State, primary: &Node) -> Result<Option<u64>> {
    if state.system_id.is_some() {
        return Ok(state.system_id);
    }
    match datadir::inspect(&primary.data_dir)? {
        DirState::Postgres { system_id, .. } => return Ok(Some(system_id)),
        // A primary of this host that does not exist yet: the cluster has
        // no identifier, so any existing replica dir is another cluster's.
        DirState::Missing | DirState::Empty
            if crate::store::local::is_local(&primary.host, &crate::store::local::local_addresses()) =>
        {
            return Ok(None)
        }
        _ => {}
    }
    let client = ctx.connect_remote(primary).await.map_err(|e| {
        Error::PrimaryUnreachable(format!("cannot check which cluster the existing replica data dirs belong to: {e}"))
    })?;
    let row = client
        .query_one("SELECT system_identifier::text FROM pg_control_system()", &[])
        .await
        .map_err(|e| Error::sql("reading the primary's system identifier", e))?;
    let text: String = row.get(0);
    Ok(text.parse().ok())
}
