//! `pgrepl down [NODE...]`: stop a running cluster, or some of its nodes,
//! replicas before the primary. Works with a foreground or detached
//! supervisor, and with postmasters left running without one.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::Node;
use crate::domain::deadline::poll;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::pg::{datadir, process};
use crate::store::ctx::Ctx;
use crate::store::lock;

/// `pgrepl down --leave-running`: stop the supervisor alone. PostgreSQL
/// keeps serving; nothing restarts it or fails it over until the next
/// `pgrepl up` adopts the running postmasters.
pub(crate) async fn leave_running(ctx: &Ctx) -> Result<()> {
    let out = Output::new(0);
    let Some(lock::Holder { pid, .. }) = lock::holder(&ctx.layout) else {
        return Err(Error::Refused("no pgrepl supervisor is running for this data root; nothing to stop".into()));
    };
    // Across hosts only the agent renews the leader lease: a primary left
    // running without it would lose the lease to a replica and keep taking
    // writes. Paused, no replica takes the lease.
    if ctx.cfg.etcd.is_some() && ctx.store().load().map(|s| s.paused.is_none()).unwrap_or(true) {
        return Err(Error::Refused(
            "down --leave-running refused: across hosts the agent renews the leader lease, and without it a replica would take over while this primary still runs. Run `pgrepl pause` first".into(),
        ));
    }
    // Under a systemd unit, the agent's exit ends the unit, and systemd
    // then kills what is left in it: the postmasters.
    if let Some(unit) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().and_then(|c| service_unit(&c)) {
        return Err(Error::Refused(format!(
            "down --leave-running refused: the agent (pid {pid}) runs under the systemd unit {unit}, and when it exits systemd kills what is left of the unit, PostgreSQL included. Stop it with `systemctl stop {unit}` (the nodes stop in order)"
        )));
    }
    crate::pg::fsutil::create_dir(&ctx.layout.run_dir(), 0o755)?;
    crate::pg::fsutil::write_atomic(&ctx.layout.leave_running_marker(), b"", 0o644)?;
    stop_supervisor(ctx, pid).await?;
    let running: Vec<&str> = ctx
        .cfg
        .nodes
        .iter()
        .filter(|n| datadir::running_postmaster(&n.data_dir).is_some())
        .map(|n| n.name.as_str())
        .collect();
    out.info(format!(
        "supervisor (pid {pid}) stopped; PostgreSQL keeps running on {} without supervision (no restarts, no automatic failover) until `pgrepl up` takes it over again",
        if running.is_empty() { "no node".to_string() } else { running.join(", ") }
    ));
    Ok(())
}

/// The systemd service a process runs in, from its `/proc/PID/cgroup`: the
/// last part of its cgroup path when that is a `.service` (a process in a
/// login session or a terminal's scope ends in `.scope`).
fn service_unit(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|l| {
        let path = l.splitn(3, ':').nth(2)?;
        let leaf = path.rsplit('/').next()?;
        (leaf.ends_with(".service") && !leaf.starts_with("user@")).then(|| leaf.to_string())
    })
}

/// SIGTERM the supervisor and wait until it has let go of the data root.
async fn stop_supervisor(ctx: &Ctx, pid: i32) -> Result<()> {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let timeout = ctx.cfg.supervisor.stop_timeout + Duration::from_secs(15);
    let released = || async { lock::holder(&ctx.layout).is_none().then_some(()) };
    poll(timeout, Duration::from_millis(100), released).await.map_err(|_| {
        Error::Timeout(format!(
            "the supervisor (pid {pid}) did not stop within {}s; see {}",
            timeout.as_secs(),
            ctx.layout.log_file().display()
        ))
    })
}

/// Entry point of `pgrepl down`.
pub(crate) async fn run(ctx: &Ctx, names: &[String]) -> Result<()> {
    let out = Output::new(0);
    let nodes: Vec<Node> = if names.is_empty() {
        ctx.cfg.nodes.clone()
    } else {
        names.iter().map(|n| ctx.cfg.node(n).cloned()).collect::<Result<_>>()?
    };
    let timeout = ctx.cfg.supervisor.stop_timeout + Duration::from_secs(15);
    if let Some(lock::Holder { pid, .. }) = lock::holder(&ctx.layout) {
        if names.is_empty() {
            out.info(format!("stopping the supervisor (pid {pid}) and its nodes"));
            // A marker left by an interrupted `down --leave-running` must not
            // turn this stop into one that leaves PostgreSQL running.
            let _ = std::fs::remove_file(ctx.layout.leave_running_marker());
            stop_supervisor(ctx, pid).await?;
        } else {
            crate::pg::fsutil::create_dir(&ctx.layout.run_dir(), 0o755)?;
            for n in &nodes {
                crate::pg::fsutil::write_atomic(&ctx.layout.stop_marker(&n.name), b"", 0o644)?;
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
            for n in &nodes {
                let gone = || async { datadir::running_postmaster(&n.data_dir).is_none().then_some(()) };
                poll(timeout, Duration::from_millis(100), gone)
                    .await
                    .map_err(|_| Error::Timeout(format!("{} did not stop within {}s", n.name, timeout.as_secs())))?;
                out.info(format!("{}: stopped", n.name));
            }
        }
    }
    // Anything still running (no supervisor, or left behind): stop it here,
    // replicas first so they do not spin reconnecting to a vanished primary.
    let primary = crate::store::view::ClusterView::read_for_display(ctx).primary.name;
    let (prim, reps): (Vec<&Node>, Vec<&Node>) = nodes.iter().partition(|n| n.name == primary);
    for group in [reps, prim] {
        let mut set = tokio::task::JoinSet::new();
        for n in group {
            let (dir, name, t) = (n.data_dir.clone(), n.name.clone(), ctx.cfg.supervisor.stop_timeout);
            set.spawn(async move { (name, process::stop_dir(&dir, t).await) });
        }
        while let Some(Ok((name, r))) = set.join_next().await {
            if r? {
                out.info(format!("{name}: stopped"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_in_a_service_is_told_from_one_in_a_session() {
        assert_eq!(service_unit("0::/system.slice/pgrepl@demo.service\n").as_deref(), Some("pgrepl@demo.service"));
        assert_eq!(service_unit("12:freezer:/\n0::/user.slice/user-1000.slice/session-3.scope\n"), None);
        assert_eq!(service_unit("0::/user.slice/user-1000.slice/user@1000.service\n"), None);
        assert_eq!(service_unit("0::/\n"), None);
    }
}
