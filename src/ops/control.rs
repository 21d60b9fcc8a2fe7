//! Starting and stopping single nodes on behalf of a move (switchover,
//! failover, rejoin, reclone) while a supervisor owns the processes.
//!
//! The user's intent is recorded in the node's stop marker, so the
//! supervisor never restarts a node a move has stopped. From another
//! process (the CLI) the supervisor is told through the marker and SIGHUP;
//! inside the supervisor (automatic failover) its handle is used directly.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::Node;
use crate::domain::deadline::poll;
use crate::error::{Error, Result};
use crate::pg::datadir;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;

/// Held while a move runs, so two moves (a command and automatic failover)
/// never interleave.
pub(crate) type MoveLock = crate::store::lock::FileLock;

/// Take the move lock, or say that another move is running.
pub(crate) fn move_lock(ctx: &Ctx) -> Result<MoveLock> {
    crate::pg::fsutil::create_dir(&ctx.layout.run_dir(), 0o755)?;
    crate::store::lock::exclusive(&ctx.layout.move_lock(), false)?.ok_or_else(|| {
        Error::Refused(
            "another move (switchover, failover, rejoin or reclone) is in progress; try again when it has finished"
                .into(),
        )
    })
}

/// Take the move lock, waiting up to `timeout` for the one who holds it
/// (the HA task holds it for a moment on every snapshot).
pub(crate) async fn wait_move_lock(ctx: &Ctx, timeout: Duration) -> Result<MoveLock> {
    // The refusal of the last try is the answer at the deadline.
    let refused = std::sync::Mutex::new(None);
    let take =
        || async { move_lock(ctx).map_err(|e| *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e)).ok() };
    match poll(timeout, Duration::from_millis(50), take).await {
        Ok(lock) => Ok(lock),
        Err(_) => Err(refused
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(|| Error::Refused("another move is in progress".into()))),
    }
}

/// What a move writes in a node's stop marker (`pgrepl down NODE` writes
/// nothing): a node left stopped by a move that no longer runs was
/// interrupted, and the supervisor starts it again; one the user stopped
/// stays stopped.
pub(crate) const MOVE_MARKER: &[u8] = b"stopped by a move\n";

/// Whether `node` is held stopped by a move (not by the user).
pub(crate) fn stopped_by_move(ctx: &Ctx, node: &str) -> bool {
    std::fs::read(ctx.layout.stop_marker(node)).is_ok_and(|b| b == MOVE_MARKER)
}

/// Make a move's stop of `node` the user's: it stays stopped until `pgrepl up`.
pub(crate) fn keep_stopped(ctx: &Ctx, node: &str) -> Result<()> {
    crate::pg::fsutil::write_atomic(&ctx.layout.stop_marker(node), b"", 0o644)
}

/// The process that runs a node's postgres, as a move sees it: the seam
/// between the steps of a move (here, in `ops`) and whoever supervises the
/// processes. The agent's supervisor implements it in-process; a
/// supervisor in another process is asked through the stop marker and
/// SIGHUP ([`Signals`]).
pub(crate) trait NodeControl: Send + Sync {
    /// Ask for `node` to stop in `mode`: resolves once asked (an in-process
    /// supervisor, once stopped); [`Control::stop`] waits for the postmaster.
    fn stop<'a>(&'a self, node: &'a Node, mode: StopMode) -> BoxFuture<'a>;
    /// Ask for `node` to run again; [`Control::start`] waits until it answers.
    fn start(&self, node: &Node);
}

/// A boxed future of a [`NodeControl`] request.
pub(crate) type BoxFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// A supervisor in another process, by pid: it reads the stop markers at SIGHUP.
pub(crate) struct Signals(pub i32);

impl NodeControl for Signals {
    fn stop<'a>(&'a self, node: &'a Node, mode: StopMode) -> BoxFuture<'a> {
        Box::pin(async move {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGHUP);
            // The supervisor stops it fast; an immediate stop or a kill is ours to send.
            if matches!(mode, StopMode::Immediate | StopMode::Kill) {
                if let Some(pf) = datadir::running_postmaster(&node.data_dir) {
                    crate::pg::process::signal_stop(pf.pid, mode);
                }
            }
        })
    }

    fn start(&self, _node: &Node) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGHUP);
    }
}

/// How a move starts and stops nodes: the stop markers, a [`NodeControl`]
/// to act, and the waits for the postmaster to go or to answer.
#[derive(Clone)]
pub(crate) struct Control(Arc<dyn NodeControl>);

impl Control {
    pub(crate) fn new(nodes: Arc<dyn NodeControl>) -> Control {
        Control(nodes)
    }

    /// The running supervisor of this data root, or an error saying how to start one.
    pub(crate) fn find(ctx: &Ctx) -> Result<Control> {
        crate::store::lock::holder(&ctx.layout).map(|h| Control::new(Arc::new(Signals(h.pid)))).ok_or_else(|| {
            Error::Refused(format!(
                "no pgrepl supervisor is running for {}; start the cluster with `pgrepl up` first",
                ctx.layout.root.display()
            ))
        })
    }

    /// Stop `node` and keep it stopped until [`Control::start`].
    pub(crate) async fn stop(&self, ctx: &Ctx, node: &Node, mode: StopMode) -> Result<()> {
        crate::pg::fsutil::create_dir(&ctx.layout.run_dir(), 0o755)?;
        crate::pg::fsutil::write_atomic(&ctx.layout.stop_marker(&node.name), MOVE_MARKER, 0o644)?;
        self.0.stop(node, mode).await;
        let timeout = ctx.cfg.supervisor.stop_timeout + Duration::from_secs(15);
        let gone = || async { datadir::running_postmaster(&node.data_dir).is_none().then_some(()) };
        poll(timeout, Duration::from_millis(50), gone)
            .await
            .map_err(|_| Error::Timeout(format!("{} did not stop within {}s", node.name, timeout.as_secs())))
    }

    /// Let `node` run again and wait until it accepts connections.
    pub(crate) async fn start(&self, ctx: &Ctx, node: &Node) -> Result<()> {
        match std::fs::remove_file(ctx.layout.stop_marker(&node.name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(ctx.layout.stop_marker(&node.name), e)),
        }
        self.0.start(node);
        let timeout = ctx.cfg.supervisor.start_timeout;
        let answers = || async {
            let ready = datadir::read_pid_file(&node.data_dir)
                .is_some_and(|pf| pf.status.as_deref() == Some("ready") && datadir::pid_alive(pf.pid));
            (ready && ctx.connect(node).await.is_ok()).then_some(())
        };
        poll(timeout, Duration::from_millis(50), answers).await.map_err(|_| {
            Error::Timeout(format!(
                "{} did not accept connections within {}s after start; see the supervisor's log ({})",
                node.name,
                timeout.as_secs(),
                ctx.layout.log_file().display()
            ))
        })
    }
}
