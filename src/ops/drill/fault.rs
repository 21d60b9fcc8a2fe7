//! The faults a drill injects, and undoing them. A frozen postmaster is
//! always thawed: when its time is up, and again when the drill ends by
//! any path (the guard's drop), so a drill that fails or is interrupted
//! does not leave a node stopped.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Node;
use crate::error::{Error, Result};
use crate::pg::datadir;
use crate::store::ctx::Ctx;

/// What a drill does to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(unreachable_pub)] // a field of the public `cli::Command`
pub enum Fault {
    /// The planned move: `pgrepl switchover`.
    Switchover,
    /// SIGKILL the primary's postmaster and every backend.
    KillPostgres,
    /// SIGSTOP them for `--freeze-for`, then SIGCONT.
    FreezePostgres,
    /// Multi-host only: SIGKILL the agent on the primary's host, which
    /// leaves a restarter behind (as systemd would restart it) first.
    KillAgent,
    /// Multi-host only: freeze every process of the primary's host.
    FreezeHost,
    /// Multi-host only: cut the primary's host off from its peers and etcd.
    IsolatePrimary,
}

impl Fault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Switchover => "switchover",
            Fault::KillPostgres => "kill-postgres",
            Fault::FreezePostgres => "freeze-postgres",
            Fault::KillAgent => "kill-agent",
            Fault::FreezeHost => "freeze-host",
            Fault::IsolatePrimary => "isolate-primary",
        }
    }

    /// Read `--fault`.
    pub(crate) fn parse(s: &str) -> std::result::Result<Fault, String> {
        let all = [
            Fault::Switchover,
            Fault::KillPostgres,
            Fault::FreezePostgres,
            Fault::KillAgent,
            Fault::FreezeHost,
            Fault::IsolatePrimary,
        ];
        all.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|f| f.name()).collect();
            format!("no fault `{s}`; the faults are {}", names.join(", "))
        })
    }

    /// Whether this fault needs an agent on each host (`[etcd]`).
    pub(crate) fn needs_hosts(self) -> bool {
        matches!(self, Fault::KillAgent | Fault::FreezeHost | Fault::IsolatePrimary)
    }
}

/// A frozen postmaster, thawed on drop if the drill has not done it.
pub(crate) struct Frozen(Option<i32>);

impl Frozen {
    pub(crate) fn none() -> Frozen {
        Frozen(None)
    }

    pub(crate) fn thaw(&mut self) {
        if let Some(pid) = self.0.take() {
            crate::pg::process::thaw_tree(pid);
        }
    }

    pub(crate) fn is_frozen(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// The postmaster of `node` (running on this machine), or why there is none.
fn postmaster(node: &Node) -> Result<i32> {
    datadir::running_postmaster(&node.data_dir).map(|pf| pf.pid).ok_or_else(|| {
        Error::Refused(format!("{} has no running postmaster here; the drill cannot act on it", node.name))
    })
}

/// Kill the primary's postgres outright.
pub(crate) fn kill(primary: &Node) -> Result<()> {
    crate::pg::process::kill_tree(postmaster(primary)?);
    Ok(())
}

/// Freeze the primary's postgres; the returned guard thaws it.
pub(crate) fn freeze(primary: &Node) -> Result<Frozen> {
    let pid = postmaster(primary)?;
    crate::pg::process::freeze_tree(pid)?;
    Ok(Frozen(Some(pid)))
}

/// The planned move, as `pgrepl switchover --yes` makes it.
pub(crate) async fn switchover(ctx: &Arc<Ctx>, out: &crate::output::Output) -> Result<()> {
    let o = crate::ops::moves::switchover::Options {
        to: None,
        max_lag: crate::domain::units::ByteSize::parse(crate::ops::moves::switchover::DEFAULT_MAX_LAG)
            .map_err(Error::Other)?,
        timeout: Duration::from_secs(60),
    };
    crate::ops::entry::switchover(ctx, &o, out).await
}
