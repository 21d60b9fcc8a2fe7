//! Running PostgreSQL programs: a cleared environment, stdin closed, the
//! right OS user, and a typed error carrying exit status and stderr.
//! Also the three stop modes and readiness through `postmaster.pid`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

use super::bin::PgBin;
use super::datadir;
use crate::domain::deadline::poll;
use crate::error::{Error, Result};
use crate::pg::os_user::RunAs;

/// A PostgreSQL program about to run: which one, and as whom.
pub(crate) fn command(bin: &PgBin, runas: &RunAs, program: &str) -> Command {
    let mut cmd = Command::new(bin.program(program));
    // An explicit environment: nothing from the caller (PGPASSWORD, PGHOST, ...)
    // leaks into what PostgreSQL sees.
    cmd.env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.dir.display()))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        // Own process group: a Ctrl-C at the terminal reaches pgrepl only,
        // and pgrepl stops the nodes in order.
        .process_group(0)
        .kill_on_drop(false);
    runas.apply_tokio(&mut cmd);
    cmd
}

/// Run to completion, capturing output: stdout then stderr on success (some
/// programs report on stderr). Non-zero exit becomes [`Error::Subprocess`]
/// with the status and stderr.
pub(crate) async fn run_captured(mut cmd: Command, name: &str) -> Result<String> {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().await.map_err(|e| Error::Subprocess {
        program: name.to_string(),
        status: format!("could not start: {e}"),
        stderr: String::new(),
    })?;
    if out.status.success() {
        Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    } else {
        Err(Error::Subprocess {
            program: name.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// How to stop a postmaster; the names are `pg_ctl stop -m`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// Disconnect clients, shut down cleanly (SIGINT).
    Fast,
    /// Quit without a shutdown checkpoint; crash recovery on start (SIGQUIT).
    Immediate,
    /// Fence: SIGKILL the postmaster and every process it started. For a
    /// server that does not answer (frozen, hung): the three modes above are
    /// signals it would act on only when it wakes, and a primary that wakes
    /// up after a failover must find nothing left to accept a write.
    Kill,
}

impl StopMode {
    fn signal(self) -> Signal {
        match self {
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
            StopMode::Kill => Signal::SIGKILL,
        }
    }
}

/// Send the stop signal for `mode` to a postmaster ([`StopMode::Kill`]
/// takes its whole process tree). A frozen postmaster is killed whatever
/// the mode: it acts on no stop signal until it runs again, and a frozen
/// primary (its fence froze it when its lease ran out, then its agent
/// died) must never run again, not even for the moment a graceful stop
/// takes: it could acknowledge writes beside the new primary.
pub(crate) fn signal_stop(pid: i32, mode: StopMode) {
    if mode == StopMode::Kill || datadir::is_frozen(pid) {
        kill_tree(pid);
    } else {
        let _ = kill(Pid::from_raw(pid), mode.signal());
    }
}

/// SIGKILL a postmaster and its children. The postmaster is stopped first so
/// it forks nothing new while its children are listed; children are killed
/// before it, since once it is gone they are re-parented and lost to a scan.
pub(crate) fn kill_tree(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
    for child in children(pid) {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Freeze a postmaster and every child it has (SIGSTOP): PostgreSQL puts
/// each child in a process group of its own, so signalling the
/// postmaster's group would leave every open session taking writes. The
/// postmaster is stopped first, so it forks nothing new while its children
/// are listed.
pub(crate) fn freeze_tree(pid: i32) -> Result<()> {
    kill(Pid::from_raw(pid), Signal::SIGSTOP).map_err(|e| Error::Other(format!("SIGSTOP {pid}: {e}")))?;
    for child in children(pid) {
        let _ = kill(Pid::from_raw(child), Signal::SIGSTOP);
    }
    Ok(())
}

/// Undo [`freeze_tree`]: the children first, then the postmaster.
pub(crate) fn thaw_tree(pid: i32) {
    for child in children(pid) {
        let _ = kill(Pid::from_raw(child), Signal::SIGCONT);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
}

/// `pid`'s descendants, parents before their children.
pub(crate) fn descendants(pid: i32) -> Vec<i32> {
    let mut out = children(pid);
    let mut i = 0;
    while i < out.len() {
        let more = children(out[i]);
        out.extend(more);
        i += 1;
    }
    out
}

/// Pids whose parent is `pid`, from /proc.
fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).ok().and_then(|s| {
                // Fields after the command (which may hold spaces): state, ppid, ...
                let (_, rest) = s.rsplit_once(") ")?;
                rest.split_whitespace().nth(1)?.parse::<i32>().ok()
            }) == Some(pid)
        })
        .collect()
}

/// Stop the postmaster running in `dir` (not necessarily our child): fast,
/// then immediate after `timeout`. Returns once its pid is gone.
pub(crate) async fn stop_dir(dir: &Path, timeout: Duration) -> Result<bool> {
    let Some(pf) = datadir::running_postmaster(dir) else {
        return Ok(false);
    };
    signal_stop(pf.pid, StopMode::Fast);
    if wait_pid_gone(pf.pid, timeout).await {
        return Ok(true);
    }
    signal_stop(pf.pid, StopMode::Immediate);
    if wait_pid_gone(pf.pid, Duration::from_secs(10)).await {
        return Ok(true);
    }
    Err(Error::Timeout(format!(
        "postmaster {} in {} did not stop after a fast and an immediate shutdown; inspect it (`ps -p {}`) before doing anything else",
        pf.pid,
        dir.display(),
        pf.pid
    )))
}

/// Poll until `pid` no longer exists, up to `timeout`.
pub(crate) async fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    let gone = || async { (!datadir::pid_alive(pid) || datadir::is_zombie(pid)).then_some(()) };
    poll(timeout, Duration::from_millis(50), gone).await.is_ok()
}

/// Wait until `postmaster.pid` in `dir` names `pid` and says `ready`.
/// `alive` is polled so that a server that dies during start-up is reported
/// at once rather than at the deadline.
pub(crate) async fn wait_pid_ready(dir: &Path, pid: i32, timeout: Duration, alive: impl Fn() -> bool) -> Result<()> {
    let state = || async {
        if datadir::read_pid_file(dir).is_some_and(|pf| pf.pid == pid && pf.status.as_deref() == Some("ready")) {
            return Some(Ok(()));
        }
        (!alive()).then(|| {
            Err(Error::Other(format!("postgres in {} exited during start-up; see its log lines above", dir.display())))
        })
    };
    // A start takes 100-300 ms: a fine poll is part of `up`'s speed, and
    // reading postmaster.pid costs next to nothing.
    poll(timeout, Duration::from_millis(10), state).await.unwrap_or_else(|_| {
        Err(Error::Timeout(format!(
            "postgres in {} was not ready after {}s; see its log lines above, or raise [supervisor] start_timeout",
            dir.display(),
            timeout.as_secs()
        )))
    })
}
