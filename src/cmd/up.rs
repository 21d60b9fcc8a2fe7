//! `pgrepl up`: check, then bring the primary up and bootstrap it, then
//! clone and start the replicas in parallel, then supervise until told to
//! stop. Idempotent: on an existing cluster it only starts what is stopped.

use std::sync::Arc;
use std::time::Duration;

use indicatif::MultiProgress;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::agent::supervise::Supervisor;
use crate::agent::Agent;
use crate::config::{Node, Role};
use crate::error::{Error, Result};
use crate::ops::configure::{write_client_files, write_node_files};
use crate::ops::preflight::{self, Action, NodePlan};
use crate::ops::wait::{wait_sql, wait_streaming};
use crate::output::Output;
use crate::pg::process::{self, StopMode};
use crate::pg::{datadir, initdb};
use crate::store::ctx::Ctx;
use crate::store::state::State;
use crate::{cmd::detach, ops::bootstrap, ops::clone, store::local, store::lock};

/// Options of `pgrepl up`.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpOptions {
    /// Only these nodes (default: every node on this host).
    pub nodes: Vec<String>,
    /// Run the supervisor in the background.
    pub detach: bool,
    /// Replicas to re-clone, moving their dir aside.
    pub reclone: Vec<String>,
    /// Set in the detached child itself.
    pub supervise_child: bool,
    /// Postgres lines only to `<data_root>/log/<node>.log`.
    pub quiet_postgres: bool,
    /// `--log-format`, passed on to a detached supervisor.
    pub log_format: Option<String>,
    /// Across hosts: the fence process, forked before the runtime started.
    pub fence: Option<std::sync::Arc<crate::agent::fence::Fence>>,
}

/// Entry point of `pgrepl up`: check and plan, then (in the foreground or
/// a detached child) take the data root, bring the nodes up, report, and
/// supervise until a signal.
pub(crate) async fn run(ctx: Arc<Ctx>, opts: UpOptions) -> Result<()> {
    let width = ctx.cfg.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
    let out = Output::new(width);
    for w in &ctx.cfg.warnings {
        out.info(format!("warning: {w}"));
    }
    let selected = select_nodes(&ctx, &opts.nodes, &out)?;
    let plans = match plan(&ctx, &selected, &opts, &out).await? {
        Planned::Attach(holder) => return attach(&ctx, holder, &selected, &out).await,
        Planned::Start(plans) => plans,
    };
    if opts.detach && !opts.supervise_child {
        return detach::spawn(&ctx, &opts, &out).await;
    }
    let names: Vec<&str> = selected.iter().map(|n| n.name.as_str()).collect();
    let _lock = take_root(&ctx, &names, &opts)?;
    let mut agent = Agent::new(ctx.clone(), &selected, out.clone(), opts.fence.clone());
    let sup = agent.supervisor().clone();
    let mut signals = Signals::new()?;
    let started = tokio::time::Instant::now();
    let result = tokio::select! {
        r = bring_up(&ctx, &sup, &plans) => r,
        _ = signals.term.recv() => Err(Error::Other("interrupted by SIGTERM during start-up; stopped what had started".into())),
        _ = signals.int.recv() => Err(Error::Other("interrupted during start-up; stopped what had started".into())),
    };
    let (timings, failed) = match result {
        Ok(t) => t,
        Err(e) => {
            agent.stop(false).await;
            return Err(e);
        }
    };
    crate::cmd::summary::print(&ctx, &selected, &out, started.elapsed());
    let parts: Vec<String> = timings.iter().map(|(k, v)| format!("{k}={v:.2}s")).collect();
    out.info(format!("timings: {} total={:.2}s", parts.join(" "), started.elapsed().as_secs_f64()));
    let failure = partial_failure(&failed, selected.len());
    agent.watch(&selected).await;
    if let Err(e) = announce_ready(&ctx, &names, failure.as_ref(), &out) {
        agent.stop(false).await;
        return Err(e);
    }
    signals.serve(&ctx, &sup).await;
    let _ = std::fs::remove_file(ctx.layout.ready_file());
    if std::fs::remove_file(ctx.layout.leave_running_marker()).is_ok() {
        agent.stop(true).await;
        out.info("exiting at `pgrepl down --leave-running`: PostgreSQL keeps running, unsupervised, until `pgrepl up`");
        return Ok(());
    }
    crate::agent::notify::notify("STOPPING=1\nSTATUS=stopping: replicas first, then the primary");
    out.info("shutting down: replicas first, then the primary (fast mode)");
    agent.stop(false).await;
    out.info("all nodes stopped");
    match failure {
        // The foreground `up` reports its partial start as its exit status.
        Some((code, _)) if !opts.supervise_child => Err(Error::Exit(code)),
        _ => Ok(()),
    }
}

/// What `up` found it should do: join a supervisor that already runs, or
/// start these nodes.
enum Planned {
    Attach(lock::Holder),
    Start(Vec<NodePlan>),
}

/// Every check `up` makes before it changes anything, done here even when
/// detaching, so a refusal reaches the user's stderr with its exit code
/// before any background process exists.
async fn plan(ctx: &Arc<Ctx>, selected: &[Node], opts: &UpOptions, out: &Output) -> Result<Planned> {
    // Across hosts, every agent must run the same cluster: the first one
    // records the cluster-wide settings, the others compare.
    if let (Some(gw), Some(e)) = (ctx.etcd(), &ctx.cfg.etcd) {
        let (gw, prefix, c) = (gw.clone(), e.prefix.clone(), ctx.clone());
        tokio::task::spawn_blocking(move || crate::store::etcd::settings::check(&gw, &prefix, &c.cfg))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
    }
    if let Some(holder) = lock::holder(&ctx.layout) {
        return Ok(Planned::Attach(holder));
    }
    let mut plans = match preflight::plan(ctx, selected, &opts.reclone).await {
        Ok(p) => p,
        // A supervisor that started while this one was checking (a racing
        // `up`) explains a port in use or a dir that changed: join it.
        Err(e) => match lock::holder(&ctx.layout) {
            Some(holder) => return Ok(Planned::Attach(holder)),
            None => return Err(e),
        },
    };
    // A node whose data dir cannot follow the primary is never started;
    // `--reclone NODE` (or `pgrepl reclone NODE`) is the way back.
    // A fenced former primary must not start before it is rewound: its files
    // still say primary. Both kinds stay stopped, with the command to run.
    let mut held = Vec::new();
    plans.retain(|p| match held_back(ctx, &p.node.name) {
        Some(why) if !matches!(p.action, Action::Clone { .. }) => {
            out.info(format!("{}: {why}", p.node.name));
            held.push(p.node.clone());
            false
        }
        _ => true,
    });
    // One held back whose postmaster still runs is a former primary whose
    // agent died after its fence froze it: it must not run on (thawed, it
    // could take writes beside the new primary). Stopping a frozen
    // postmaster kills it.
    for node in held.iter().filter(|n| datadir::running_postmaster(&n.data_dir).is_some()) {
        out.info(format!("{}: its postmaster still runs though the record holds it back: stopping it", node.name));
        crate::pg::process::stop_dir(&node.data_dir, ctx.cfg.supervisor.stop_timeout).await?;
    }
    Ok(Planned::Start(plans))
}

/// The supervisor's lock, then the data root it owns. The lock comes
/// first, so a second `up` racing this one stops at the lock with a clear
/// message instead of tripping over files being written.
fn take_root(ctx: &Ctx, names: &[&str], opts: &UpOptions) -> Result<lock::SupervisorLock> {
    crate::pg::fsutil::create_dir(&ctx.layout.root, 0o700)?;
    ctx.runas.chown(&ctx.layout.root)?;
    let lock = lock::acquire(&ctx.layout, names)?;
    let _ = std::fs::remove_file(ctx.layout.leave_running_marker());
    prepare_root(ctx)?;
    if opts.quiet_postgres {
        crate::pg::fsutil::create_dir(&ctx.layout.root.join("log"), 0o700)?;
    }
    // What pgrepl's own settings were when this supervisor started.
    if let Ok(text) = std::fs::read(&ctx.cfg.path) {
        crate::pg::fsutil::write_atomic(&ctx.layout.supervisor_config(), &text, 0o600)?;
    }
    Ok(lock)
}

/// A standby that cannot start does not take the others down: they keep
/// running and being supervised, and `up` reports it (exit code, message)
/// and exits non-zero.
fn partial_failure(failed: &[Error], selected: usize) -> Option<(i32, String)> {
    failed.first().map(|e| {
        let text = failed.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        (
            e.exit_code(),
            format!(
                "{} of {selected} node(s) could not be brought up; the others run and are supervised:\n{text}",
                failed.len()
            ),
        )
    })
}

/// Tell whoever waits that the nodes are up in their roles: `up --detach`
/// reads the ready file (the pid, then an exit code and message when part
/// of the cluster could not be brought up), systemd gets READY=1.
fn announce_ready(ctx: &Ctx, names: &[&str], failure: Option<&(i32, String)>, out: &Output) -> Result<()> {
    let ready = match failure {
        None => std::process::id().to_string(),
        Some((code, msg)) => format!("{}\n{code}\n{msg}", std::process::id()),
    };
    crate::pg::fsutil::write_atomic(&ctx.layout.ready_file(), ready.as_bytes(), 0o644)?;
    if let Some((_, msg)) = failure {
        out.info(format!("error: {msg}"));
    }
    let status = match failure {
        None => format!("supervising {}", names.join(", ")),
        Some((_, msg)) => msg.lines().next().unwrap_or_default().to_string(),
    };
    crate::agent::notify::notify(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id()));
    Ok(())
}

/// The signals the supervisor answers: TERM and INT stop it, HUP is the
/// doorbell of a command that changed what should run.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        let on = |kind| signal(kind).map_err(|e| Error::Other(e.to_string()));
        Ok(Signals {
            term: on(SignalKind::terminate())?,
            int: on(SignalKind::interrupt())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// Supervise until TERM or INT.
    async fn serve(&mut self, ctx: &Ctx, sup: &Supervisor) {
        loop {
            tokio::select! {
                _ = self.term.recv() => break,
                _ = self.int.recv() => break,
                _ = self.hup.recv() => reconcile(ctx, sup),
            }
        }
    }
}

/// The named nodes, or every node whose host is on this machine.
fn select_nodes(ctx: &Ctx, names: &[String], out: &Output) -> Result<Vec<Node>> {
    if !names.is_empty() {
        return names.iter().map(|n| ctx.cfg.node(n).cloned()).collect();
    }
    let addrs = local::local_addresses();
    let (mine, theirs): (Vec<&Node>, Vec<&Node>) = ctx.cfg.nodes.iter().partition(|n| local::is_local(&n.host, &addrs));
    if !theirs.is_empty() {
        let names: Vec<String> = theirs.iter().map(|n| format!("{} ({})", n.name, n.host)).collect();
        out.info(format!("leaving {} to their own hosts; run `pgrepl up NODE` there", names.join(", ")));
    }
    if mine.is_empty() {
        return Err(Error::Usage(format!(
            "no node in {} has a host on this machine; name the node to run here: `pgrepl up NODE`",
            ctx.cfg.path.display()
        )));
    }
    Ok(mine.into_iter().cloned().collect())
}

/// Data root, socket dir, run dir and passfile, owned by the OS user.
fn prepare_root(ctx: &Ctx) -> Result<()> {
    let l = &ctx.layout;
    for d in [l.root.clone(), l.socket_dir()] {
        crate::pg::fsutil::create_dir(&d, 0o700)?;
        ctx.runas.chown(&d)?;
    }
    crate::pg::fsutil::create_dir(&l.run_dir(), 0o755)?;
    if let Some(a) = &ctx.cfg.archive {
        // PostgreSQL's archive_command writes here as the OS user.
        crate::pg::fsutil::create_dir(a, 0o700)?;
        ctx.runas.chown(a)?;
    }
    write_client_files(ctx)
}

/// Seconds spent in each phase of `up`, printed for operators and the benchmark.
struct Timings {
    phases: Vec<(&'static str, f64)>,
    since: tokio::time::Instant,
}

impl Timings {
    fn new() -> Timings {
        Timings { phases: Vec::new(), since: tokio::time::Instant::now() }
    }

    /// The phase `name` ends now; the next one starts.
    fn lap(&mut self, name: &'static str) {
        self.phases.push((name, self.since.elapsed().as_secs_f64()));
        self.since = tokio::time::Instant::now();
    }
}

/// The seed copies being made while the primary starts, and for whom.
type Seeding = (tokio::task::JoinHandle<Result<()>>, Vec<Node>);

/// Bring the selected nodes up: the primary first (an error there is the
/// whole `up`'s), then the replicas in parallel, whose failures are
/// returned beside the timings so the rest of the cluster keeps running.
async fn bring_up(
    ctx: &Arc<Ctx>,
    sup: &Supervisor,
    plans: &[NodePlan],
) -> Result<(Vec<(&'static str, f64)>, Vec<Error>)> {
    let primary = crate::store::view::ClusterView::read(ctx)?.primary;
    let mut plans = plans.to_vec();
    let total = plans.len();
    let mut timings = Timings::new();
    for p in &plans {
        let _ = std::fs::remove_file(ctx.layout.stop_marker(&p.node.name));
    }
    let primary_plan = plans.iter().find(|p| p.role == Role::Primary).cloned();
    let mut seeding = None;
    if let Some(p) = &primary_plan {
        if p.action == Action::Init {
            seeding = init_and_seed(ctx, sup, p, &mut plans, &primary, &mut timings).await?;
        }
        write_node_files(ctx, &p.node, &p.node.data_dir, Role::Primary, &primary)?;
        if p.action == Action::Init && seeding.is_none() {
            // initdb's files are durable before the primary writes its
            // first WAL on top of them (seeding synced them already).
            initdb::sync(&p.node.data_dir)?;
        }
        start_and_wait(ctx, sup, &p.node).await?;
        // What a replica needs to stream, before any starts: the role and the slots.
        crate::ops::bootstrap::replication(ctx, &p.node).await?;
        timings.lap("primary_start");
    }
    let mut failed = Vec::new();
    if let Some((s, seeded)) = seeding {
        s.await.map_err(|e| Error::Other(format!("seeding task failed: {e}")))??;
        timings.lap("seed_copies");
        if let (Some(p), Some(first)) = (&primary_plan, seeded.first()) {
            if let Err(e) = crate::ops::seed::check_login(ctx, &p.node, first).await {
                // The seeded dirs are ours, made moments ago: like a failed
                // clone, leave none behind, and say why once per node.
                for r in &seeded {
                    std::fs::remove_dir_all(&r.data_dir).map_err(|e| Error::io(&r.data_dir, e))?;
                }
                sup.out.info(format!("error: {e}"));
                plans.retain(|p| !seeded.iter().any(|r| r.name == p.node.name));
                failed.push(e);
            }
        }
    }
    // The replicas come up while the primary runs the rest of its bootstrap.
    let replicas: Vec<&NodePlan> = plans.iter().filter(|p| p.role == Role::Replica).collect();
    let bars = (sup.out.is_tty() && replicas.iter().any(|p| matches!(p.action, Action::Clone { .. })))
        .then(MultiProgress::new);
    let mut set = JoinSet::new();
    for p in replicas {
        let (ctx, sup, p, primary) = (ctx.clone(), sup.clone(), p.clone(), primary.clone());
        let bar = bars
            .as_ref()
            .filter(|_| matches!(p.action, Action::Clone { .. }))
            .map(|m| m.add(clone::progress_bar(&p.node.name)));
        set.spawn(async move {
            replica_up(&ctx, &sup, &p, &primary, bar).await.map_err(|e| match e {
                // Errors that do not say which node they are about.
                Error::Io { .. } | Error::Sql { .. } | Error::Other(_) if !e.to_string().starts_with(&p.node.name) => {
                    Error::Other(format!("{}: {e}", p.node.name))
                }
                e => e,
            })
        });
    }
    if let Some(p) = &primary_plan {
        let mut state = ctx.store().load()?;
        bootstrap::run(ctx, &p.node, &mut state, &sup.out).await?;
        timings.lap("bootstrap");
        sup.out.info(format!("{}: primary ready on {}:{}", p.node.name, p.node.host, p.node.port));
    }
    let mut clone_max: Option<f64> = None;
    while let Some(r) = set.join_next().await {
        let r = r.unwrap_or_else(|e| Err(Error::Other(format!("replica task failed: {e}"))));
        match r {
            Ok(Some(secs)) => clone_max = Some(clone_max.unwrap_or(0.0).max(secs)),
            Ok(None) => {}
            Err(e) => {
                sup.out.info(format!("error: {e}"));
                failed.push(e);
            }
        }
    }
    if let Some(c) = clone_max {
        timings.phases.push(("slowest_clone", c));
    }
    timings.lap("replicas");
    // Nothing ran if no node came up: that is a plain failure.
    if !failed.is_empty() && failed.len() >= total {
        return Err(failed.remove(0));
    }
    Ok((timings.phases, failed))
}

/// A new cluster: initdb the primary and record it; when there are new
/// replicas, copy the fresh data dir for them (one copy before the primary
/// starts, the others while it starts: returned as the seeding task).
async fn init_and_seed(
    ctx: &Arc<Ctx>,
    sup: &Supervisor,
    p: &NodePlan,
    plans: &mut [NodePlan],
    primary: &Node,
    timings: &mut Timings,
) -> Result<Option<Seeding>> {
    sup.out.info(format!(
        "{}: initdb in {} (PostgreSQL {})",
        p.node.name,
        p.node.data_dir.display(),
        ctx.bin()?.version
    ));
    initdb::initdb(ctx.bin()?, &ctx.runas, &p.node.data_dir).await?;
    let state = State {
        cluster: ctx.cfg.cluster_name.clone(),
        system_id: Some(datadir::system_id(&p.node.data_dir)?),
        primary: Some(p.node.name.clone()),
        ..State::default()
    };
    // Across hosts the record is shared: a cluster already recorded there
    // (by another host, or an earlier run with this name) is never replaced.
    let ours = ctx.store().update(|s| {
        if s.system_id.is_some_and(|id| Some(id) != state.system_id) {
            return false;
        }
        *s = state.clone();
        true
    })?;
    if !ours {
        return Err(Error::Refused(format!(
            "{}: the cluster's record already holds another cluster named {}; the new data dir was not recorded. Use another [cluster] name (or [etcd] prefix) for a new cluster",
            p.node.name, ctx.cfg.cluster_name
        )));
    }
    timings.lap("initdb");
    // A new cluster's replicas start from copies of the fresh initdb.
    let fresh: Vec<Node> = plans
        .iter()
        .filter(|r| r.role == Role::Replica && r.action == (Action::Clone { move_aside: false }))
        .map(|r| r.node.clone())
        .collect();
    if !fresh.is_empty() {
        // A standby refuses to start below the max_connections & co
        // its base's pg_control records: if the configured values
        // are lower than initdb's, one start and clean stop records them.
        write_node_files(ctx, &p.node, &p.node.data_dir, Role::Primary, primary)?;
        if !seed_base_fits(ctx, &p.node).await {
            initdb::sync(&p.node.data_dir)?;
            start_and_wait(ctx, sup, &p.node).await?;
            sup.stop(&p.node.name, StopMode::Fast).await;
        }
        let snapshot = crate::ops::seed::snapshot(ctx, &p.node, &fresh).await?;
        for r in plans.iter_mut().filter(|r| fresh.iter().any(|f| f.name == r.node.name)) {
            r.action = Action::Start;
        }
        // initdb's files and the snapshot are made durable now,
        // before the other copies start: a sync forces a journal
        // commit, which would stall their file creation.
        initdb::sync(&p.node.data_dir)?;
        timings.lap("seed_snapshot");
        let (c, n, o, f) = (ctx.clone(), p.node.clone(), sup.out.clone(), fresh.clone());
        let task = tokio::spawn(async move { crate::ops::seed::place(&c, &snapshot, &n, &f, &o).await });
        return Ok(Some((task, fresh)));
    }
    Ok(None)
}

/// Whether replicas seeded from the fresh initdb can start with the
/// configured limits as initdb recorded them (no pg_controldata of this
/// major to tell: assume not).
async fn seed_base_fits(ctx: &Ctx, primary: &Node) -> bool {
    let Ok(bin) = ctx.bin() else { return false };
    let Ok(cd) = crate::pg::controldata::read(bin, &ctx.runas, &primary.data_dir).await else { return false };
    let read = |f: &str| std::fs::read_to_string(primary.data_dir.join(f)).unwrap_or_default();
    crate::ops::seed::limits_suffice(&cd.standby_minimums, &read("postgresql.conf"), &read(crate::pg::conf::BASE_FILE))
}

/// Bring one replica up; returns how long its clone took, if it was cloned.
async fn replica_up(
    ctx: &Ctx,
    sup: &Supervisor,
    p: &NodePlan,
    primary: &Node,
    bar: Option<indicatif::ProgressBar>,
) -> Result<Option<f64>> {
    let t = tokio::time::Instant::now();
    let cloned = match p.action {
        Action::Clone { move_aside } => {
            clone::clone(ctx, &p.node, primary, move_aside, &sup.out, bar).await?;
            Some(t.elapsed().as_secs_f64())
        }
        _ => {
            write_node_files(ctx, &p.node, &p.node.data_dir, Role::Replica, primary)?;
            None
        }
    };
    start_and_wait(ctx, sup, &p.node).await.map_err(|e| cause(sup, &p.node, e))?;
    wait_streaming(ctx, &p.node, primary).await?;
    if cloned.is_some() {
        crate::ops::moves::set_needs_reclone(ctx, &p.node, false)?;
    }
    sup.out.info(format!("{}: streaming from {}", p.node.name, primary.name));
    Ok(cloned)
}

/// A start failure with its cause: postgres that exited is a failed
/// program (exit 9) with its last FATAL line; a refusal or a timeout keeps
/// its class, with the node's name and what its log said.
fn cause(sup: &Supervisor, node: &Node, e: Error) -> Error {
    let trouble = sup.trouble(&node.name).map(|l| l.trim().to_string());
    let why = trouble.as_ref().map(|l| format!("; its log says: {l}")).unwrap_or_default();
    match e {
        Error::Timeout(t) => Error::Timeout(format!("{}: {t}{why}", node.name)),
        Error::Refused(t) => Error::Refused(format!("{}: {t}", node.name)),
        e => Error::Subprocess {
            program: format!("postgres for {}", node.name),
            status: e.to_string(),
            stderr: trouble.unwrap_or_default(),
        },
    }
}

/// Start `node` under the supervisor and wait until it accepts connections:
/// `postmaster.pid` says ready, then a SQL ping succeeds.
async fn start_and_wait(ctx: &Ctx, sup: &Supervisor, node: &Node) -> Result<()> {
    let timeout = ctx.cfg.supervisor.start_timeout;
    sup.start(&node.name);
    let pid = sup.wait_pid(&node.name, timeout).await.ok_or_else(|| {
        Error::Timeout(format!("{}: postgres did not start within {}s", node.name, timeout.as_secs()))
    })?;
    let name = node.name.clone();
    process::wait_pid_ready(&node.data_dir, pid, timeout, || {
        sup.state(&name) == crate::agent::supervise::NodeState::Running { pid }
    })
    .await?;
    wait_sql(ctx, node, timeout).await
}

/// SIGHUP: apply `pgrepl down NODE` / `pgrepl up NODE` requests.
fn reconcile(ctx: &Ctx, sup: &Supervisor) {
    for name in sup.nodes() {
        let stop = ctx.layout.stop_marker(&name).exists();
        if stop && sup.wanted(&name) {
            sup.out.info(format!("{name}: stop requested"));
            sup.request_stop(&name, StopMode::Fast);
        } else if let (false, false, Some(why)) = (stop, sup.wanted(&name), held_back(ctx, &name)) {
            sup.out.info(format!("{name}: {why}"));
        } else if !stop && !sup.wanted(&name) {
            sup.out.info(format!("{name}: start requested"));
            sup.start(&name);
        }
    }
}

/// Why the record keeps a node stopped, if it does ([`crate::ops::configure::held_back`]).
fn held_back(ctx: &Ctx, name: &str) -> Option<String> {
    crate::ops::configure::held_back(&ctx.store().load().ok()?, name)
}

/// A supervisor already runs this data root: ask it to start the selected
/// nodes, and wait for them like a fresh `up` would.
async fn attach(ctx: &Ctx, holder: lock::Holder, selected: &[Node], out: &Output) -> Result<()> {
    let (pid, managed) = (holder.pid, holder.nodes);
    let missing: Vec<&str> =
        selected.iter().map(|n| n.name.as_str()).filter(|n| !managed.iter().any(|m| m == n)).collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "a supervisor (pid {pid}) already runs this data root but manages only {}; it cannot take on {} while running. Run `pgrepl down`, then `pgrepl up` with every node this host should run",
            managed.join(", "),
            missing.join(", ")
        )));
    }
    out.info(format!("a supervisor is already running (pid {pid}); asking it to start anything stopped"));
    for n in selected {
        let _ = std::fs::remove_file(ctx.layout.stop_marker(&n.name));
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP);
    for n in selected.iter().filter(|n| held_back(ctx, &n.name).is_none()) {
        let mut deadline = tokio::time::Instant::now() + ctx.cfg.supervisor.start_timeout;
        let staging = datadir::staging_path(&n.data_dir, "clone");
        while !datadir::read_pid_file(&n.data_dir)
            .is_some_and(|pf| pf.status.as_deref() == Some("ready") && datadir::pid_alive(pf.pid))
        {
            // The supervisor is cloning it (its data dir was gone): a copy
            // takes as long as it takes; the start timeout runs after it.
            if staging.exists() {
                deadline = tokio::time::Instant::now() + ctx.cfg.supervisor.start_timeout;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "{}: not ready after {}s; see the supervisor's log at {}",
                    n.name,
                    ctx.cfg.supervisor.start_timeout.as_secs(),
                    ctx.layout.log_file().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_sql(ctx, n, ctx.cfg.supervisor.start_timeout).await?;
    }
    crate::cmd::summary::print(ctx, selected, out, Duration::ZERO);
    Ok(())
}
