//! The supervisor: one task per local node that keeps its postmaster in the
//! state the orchestrator asks for. A postmaster that dies while wanted is
//! restarted with exponential backoff; a stop request is carried out with
//! the asked-for mode, escalating to immediate after `stop_timeout`.
//! Readiness (is it accepting connections? streaming?) is not decided here:
//! that is `up`'s job.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Node;
pub(crate) use crate::output::Output;
use crate::pg::datadir;
use crate::pg::process::{self, StopMode};
use crate::store::ctx::Ctx;

/// What the orchestrator wants a node to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Desired {
    Running,
    Stopped(StopMode),
}

/// What a node is, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeState {
    Stopped,
    /// A postmaster process exists (not necessarily ready yet).
    Running {
        pid: i32,
    },
    /// It died while wanted; restarting after a backoff.
    Backoff {
        restarts: u32,
    },
}

struct Slot {
    desired: watch::Sender<Desired>,
    state: watch::Receiver<NodeState>,
    restarts: Arc<AtomicU32>,
    /// The node's last FATAL/PANIC log line: the cause to name when it
    /// cannot start ("No space left on device").
    trouble: Arc<std::sync::Mutex<Option<String>>>,
}

/// Handle to the running supervisor.
#[derive(Clone)]
pub(crate) struct Supervisor {
    slots: Arc<HashMap<String, Slot>>,
    pub out: Output,
}

impl Supervisor {
    /// Spawn one (idle) task per node.
    pub(crate) fn new(ctx: Arc<Ctx>, nodes: &[Node], out: Output) -> Self {
        let mut slots = HashMap::new();
        for node in nodes {
            let (dtx, drx) = watch::channel(Desired::Stopped(StopMode::Fast));
            let (stx, srx) = watch::channel(NodeState::Stopped);
            let index = ctx.cfg.nodes.iter().position(|n| n.name == node.name).unwrap_or(0);
            let restarts = Arc::new(AtomicU32::new(0));
            let trouble = Arc::new(std::sync::Mutex::new(None));
            let task = NodeTask {
                ctx: ctx.clone(),
                node: node.clone(),
                index,
                out: out.clone(),
                restart_count: restarts.clone(),
                trouble: trouble.clone(),
            };
            tokio::spawn(node_task(task, drx, stx));
            slots.insert(node.name.clone(), Slot { desired: dtx, state: srx, restarts, trouble });
        }
        Supervisor { slots: Arc::new(slots), out }
    }

    /// Ask for `node` to run. Returns at once.
    pub(crate) fn start(&self, node: &str) {
        if let Some(s) = self.slots.get(node) {
            s.desired.send_replace(Desired::Running);
        }
    }

    /// Ask for `node` to stop with `mode`. Returns at once.
    pub(crate) fn request_stop(&self, node: &str, mode: StopMode) {
        if let Some(s) = self.slots.get(node) {
            s.desired.send_replace(Desired::Stopped(mode));
        }
    }

    /// Wait until `node` has stopped.
    pub(crate) async fn wait_stopped(&self, node: &str) {
        if let Some(s) = self.slots.get(node) {
            let mut rx = s.state.clone();
            let _ = rx.wait_for(|st| *st == NodeState::Stopped).await;
        }
    }

    /// Ask for `node` to stop with `mode`, and wait until it has.
    pub(crate) async fn stop(&self, node: &str, mode: StopMode) {
        self.request_stop(node, mode);
        self.wait_stopped(node).await;
    }

    /// Restarts after unexpected exits, per node, sorted by name.
    pub(crate) fn restarts(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> =
            self.slots.iter().map(|(n, s)| (n.clone(), s.restarts.load(Ordering::Relaxed))).collect();
        v.sort();
        v
    }

    /// The node's last FATAL or PANIC log line since pgrepl last started it.
    pub(crate) fn trouble(&self, node: &str) -> Option<String> {
        self.slots.get(node).and_then(|s| s.trouble.lock().ok()?.clone())
    }

    /// Names of the supervised nodes.
    pub(crate) fn nodes(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    /// The node's current state.
    pub(crate) fn state(&self, node: &str) -> NodeState {
        self.slots.get(node).map_or(NodeState::Stopped, |s| s.state.borrow().clone())
    }

    /// The pid of the node's postmaster, waiting until one exists.
    pub(crate) async fn wait_pid(&self, node: &str, timeout: Duration) -> Option<i32> {
        let mut rx = self.slots.get(node)?.state.clone();
        let st =
            tokio::time::timeout(timeout, rx.wait_for(|s| matches!(s, NodeState::Running { .. }))).await.ok()?.ok()?;
        match *st {
            NodeState::Running { pid } => Some(pid),
            _ => None,
        }
    }

    /// Whether the node is wanted running.
    pub(crate) fn wanted(&self, node: &str) -> bool {
        self.slots.get(node).is_some_and(|s| *s.desired.borrow() == Desired::Running)
    }

    /// Stop every node: all replicas at once, then the primary, so the
    /// replicas do not spin reconnecting to a primary that is going away.
    pub(crate) async fn shutdown(&self, primary: &str, mode: StopMode) {
        let others: Vec<_> = self.slots.keys().filter(|n| *n != primary).cloned().collect();
        for n in &others {
            self.request_stop(n, mode);
        }
        for n in &others {
            self.wait_stopped(n).await;
        }
        self.stop(primary, mode).await;
    }
}

/// A move run inside the agent (automatic failover) starts and stops nodes
/// through the supervisor directly.
impl crate::ops::control::NodeControl for Supervisor {
    fn stop<'a>(&'a self, node: &'a Node, mode: StopMode) -> crate::ops::control::BoxFuture<'a> {
        Box::pin(Supervisor::stop(self, &node.name, mode))
    }

    fn start(&self, node: &Node) {
        Supervisor::start(self, &node.name)
    }
}

/// The postmaster we are watching: our child, or one that was already
/// running when we started (adopted; we poll its pid).
enum Proc {
    Child(tokio::process::Child),
    Adopted(i32),
}

impl Proc {
    fn pid(&self) -> i32 {
        match self {
            Proc::Child(c) => c.id().map_or(-1, |p| p as i32),
            Proc::Adopted(p) => *p,
        }
    }
    async fn wait(&mut self) -> String {
        match self {
            Proc::Child(c) => c.wait().await.map_or_else(|e| e.to_string(), |s| s.to_string()),
            Proc::Adopted(pid) => {
                while datadir::pid_alive(*pid) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                "exited".to_string()
            }
        }
    }
}

/// What one node's task needs besides its channels.
struct NodeTask {
    ctx: Arc<Ctx>,
    node: Node,
    index: usize,
    out: Output,
    restart_count: Arc<AtomicU32>,
    trouble: Arc<std::sync::Mutex<Option<String>>>,
}

fn spawn_postgres(t: &NodeTask) -> std::io::Result<Proc> {
    let bin = t.ctx.bin().map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut cmd = process::command(bin, &t.ctx.runas, "postgres");
    cmd.arg("-D").arg(&t.node.data_dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Ok(mut g) = t.trouble.lock() {
        *g = None;
    }
    if let Some(o) = child.stdout.take() {
        tokio::spawn(pump(o, t.node.name.clone(), t.index, t.out.clone(), t.trouble.clone()));
    }
    if let Some(e) = child.stderr.take() {
        tokio::spawn(pump(e, t.node.name.clone(), t.index, t.out.clone(), t.trouble.clone()));
    }
    Ok(Proc::Child(child))
}

async fn pump(
    r: impl AsyncRead + Unpin,
    name: String,
    index: usize,
    out: Output,
    trouble: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("FATAL:") || line.contains("PANIC:") {
            if let Ok(mut g) = trouble.lock() {
                *g = Some(line.clone());
            }
        }
        out.node_line(&name, index, &line);
    }
}

/// Wait until the desired state is a stop; returns its mode.
async fn stop_requested(rx: &mut watch::Receiver<Desired>) -> Option<StopMode> {
    match rx.wait_for(|d| matches!(d, Desired::Stopped(_))).await {
        Ok(d) => match *d {
            Desired::Stopped(m) => Some(m),
            Desired::Running => None,
        },
        Err(_) => None,
    }
}

/// The node's postmaster: adopted if one already runs on its data dir,
/// otherwise spawned through the start gate (every start passes it: role
/// files from the cluster's record). Err is the sentence to log.
fn start(t: &NodeTask) -> std::result::Result<Proc, String> {
    let (node, out) = (&t.node, &t.out);
    match datadir::running_postmaster(&node.data_dir) {
        Some(pf) => {
            out.info(format!("{}: postgres already running (pid {}); supervising it, but its log lines are not captured until it restarts", node.name, pf.pid));
            Ok(Proc::Adopted(pf.pid))
        }
        None => match crate::ops::configure::prepare_start(&t.ctx, node) {
            Ok(_) => spawn_postgres(t).map_err(|e| format!("{}: could not start postgres: {e}", node.name)),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Stop the postmaster in `mode`; if it still runs after `stop_timeout`,
/// immediately; if even that is ignored, it is frozen or hung (it acts on
/// no signal until it wakes), so kill it and its processes.
async fn stop_escalating(proc: &mut Proc, mode: StopMode, stop_timeout: Duration, name: &str, out: &Output) {
    let pid = proc.pid();
    process::signal_stop(pid, mode);
    if tokio::time::timeout(stop_timeout, proc.wait()).await.is_ok() {
        return;
    }
    out.info(format!(
        "{name}: still running {}s after a {mode:?} stop; stopping it immediately",
        stop_timeout.as_secs()
    ));
    process::signal_stop(pid, StopMode::Immediate);
    if tokio::time::timeout(Duration::from_secs(5), proc.wait()).await.is_err() {
        out.info(format!("{name}: still running after an immediate stop (frozen?); killing it and its processes"));
        process::kill_tree(pid);
        proc.wait().await;
    }
}

async fn node_task(t: NodeTask, mut desired: watch::Receiver<Desired>, state: watch::Sender<NodeState>) {
    let (ctx, node, out, restart_count) = (&t.ctx, &t.node, &t.out, &t.restart_count);
    let max_backoff = ctx.cfg.supervisor.restart_backoff_max.max(Duration::from_secs(1));
    let stop_timeout = ctx.cfg.supervisor.stop_timeout;
    let mut backoff = Duration::from_secs(1);
    let mut restarts = 0u32;
    let mut refused: Option<String> = None;
    loop {
        if desired.wait_for(|d| *d == Desired::Running).await.is_err() {
            return;
        }
        let mut proc = match start(&t) {
            Ok(p) => {
                refused = None;
                p
            }
            Err(why) => {
                if let Ok(mut g) = t.trouble.lock() {
                    *g = Some(why.clone());
                }
                // A refusal is logged once, not at every retry.
                if refused.as_deref() != Some(why.as_str()) {
                    out.info(format!("{why}; retrying in {}s", backoff.as_secs()));
                    refused = Some(why);
                }
                state.send_replace(NodeState::Backoff { restarts });
                if let Ok(Some(_)) = tokio::time::timeout(backoff, stop_requested(&mut desired)).await {
                    // Asked to stop while it could not start: it is stopped,
                    // and the next start is a fresh one.
                    state.send_replace(NodeState::Stopped);
                    backoff = Duration::from_secs(1);
                    refused = None;
                    continue;
                }
                backoff = (backoff * 2).min(max_backoff);
                continue;
            }
        };
        let pid = proc.pid();
        state.send_replace(NodeState::Running { pid });
        let started = Instant::now();
        tokio::select! {
            status = proc.wait() => {
                // `pgrepl down NODE` may signal the postmaster before we have
                // seen its stop request; its marker says the exit was wanted.
                if *desired.borrow() != Desired::Running || ctx.layout.stop_marker(&node.name).exists() {
                    state.send_replace(NodeState::Stopped);
                    continue;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                restarts += 1;
                restart_count.store(restarts, Ordering::Relaxed);
                out.info(format!("{}: postgres (pid {pid}) exited unexpectedly ({status}); restart #{restarts} in {}s", node.name, backoff.as_secs()));
                state.send_replace(NodeState::Backoff { restarts });
                // Wake early if the node is stopped meanwhile.
                if let Ok(Some(_)) = tokio::time::timeout(backoff, stop_requested(&mut desired)).await {
                    state.send_replace(NodeState::Stopped);
                }
                backoff = (backoff * 2).min(max_backoff);
            }
            mode = stop_requested(&mut desired) => {
                // None: the supervisor let go of its nodes (`down
                // --leave-running`); a stop is always asked for explicitly.
                let Some(mode) = mode else { return };
                stop_escalating(&mut proc, mode, stop_timeout, &node.name, out).await;
                out.info(format!("{}: stopped", node.name));
                // A stop someone asked for ends any crash streak: the next
                // start (after a re-clone, say) begins at the shortest backoff.
                backoff = Duration::from_secs(1);
                state.send_replace(NodeState::Stopped);
            }
        }
    }
}
