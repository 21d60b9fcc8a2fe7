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
    /// Multi-host only: freeze the agent, fence and PostgreSQL of the
    /// primary's host, as a stalled VM.
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

/// The addresses `node`'s host talks to: the other nodes' hosts and the
/// etcd members. Names are resolved; this host's own address is left out.
pub(crate) fn peers(ctx: &Ctx, node: &Node) -> Vec<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let mine: Vec<std::net::IpAddr> =
        (node.host.as_str(), 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default();
    let hosts = ctx.cfg.nodes.iter().filter(|n| n.name != node.name).map(|n| n.host.clone());
    // `http://10.0.0.21:2379` -> `10.0.0.21`; `[::1]:2379` -> `::1`.
    let etcd = ctx.cfg.etcd.iter().flat_map(|e| e.endpoints.iter()).filter_map(|u| {
        let rest = u.split_once("://").map_or(u.as_str(), |(_, r)| r);
        let hostport = rest.split('/').next()?;
        let host = match hostport.strip_prefix('[') {
            Some(v6) => v6.split(']').next()?,
            None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
        };
        Some(host.to_string())
    });
    let mut out: Vec<std::net::IpAddr> = Vec::new();
    for h in hosts.chain(etcd) {
        for ip in (h.as_str(), 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect::<Vec<_>>()).unwrap_or_default() {
            if !mine.contains(&ip) && !ip.is_loopback() && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Cut this host off from `peers` with blackhole routes for `seconds`.
/// The undo is started first, as a process of its own, so it runs even if
/// the agent (or the drill) dies meanwhile.
pub(crate) async fn isolate(peers: &[std::net::IpAddr], seconds: u64) -> Result<()> {
    use std::os::unix::process::CommandExt;
    if peers.is_empty() {
        return Err(Error::Refused("no peer address to cut this host off from".into()));
    }
    let route = |ip: &std::net::IpAddr| if ip.is_ipv4() { format!("{ip}/32") } else { format!("{ip}/128") };
    let undo: Vec<String> = peers.iter().map(|p| format!("ip route del blackhole {}", route(p))).collect();
    std::process::Command::new("sh")
        .args(["-c", &format!("sleep {seconds}; {}", undo.join("; "))])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Other(format!("cannot start the undo of the isolation: {e}")))?;
    for p in peers {
        let o = std::process::Command::new("ip").args(["route", "add", "blackhole", &route(p)]).output();
        match o {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(Error::Other(format!(
                    "ip route add blackhole {}: {} (isolating needs root; the undo runs in {seconds}s)",
                    route(p),
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
            Err(e) => return Err(Error::Other(format!("ip: {e} (iproute2 is needed to isolate a host)"))),
        }
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    // Undone here too (the undo process may not have run yet: both slept
    // as long), so whoever waits for this fault finds the host reachable.
    for p in peers {
        let _ = std::process::Command::new("ip").args(["route", "del", "blackhole", &route(p)]).output();
    }
    Ok(())
}

/// Freeze this host's pgrepl as a stalled VM would be: this agent, its
/// fence and every PostgreSQL process it runs, for `seconds`, then all of
/// them again at once. A helper process of its own does it (a frozen agent
/// cannot thaw itself): it stops each postmaster first, so none forks a
/// backend the list misses, and continues everything with one `kill`.
pub(crate) async fn freeze_host(seconds: u64) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let me = std::process::id() as i32;
    let below = crate::pg::process::descendants(me);
    let postmasters: Vec<i32> = below.iter().copied().filter(|p| is_postmaster(*p)).collect();
    let rest: Vec<i32> = below.iter().copied().filter(|p| !postmasters.contains(p)).chain([me]).collect();
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(" ");
    let (pm, others) = (list(&postmasters), list(&rest));
    let script = format!("kill -STOP {pm} 2>/dev/null; kill -STOP {others} 2>/dev/null; sleep {seconds}; kill -CONT {pm} {others} 2>/dev/null");
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Other(format!("cannot start the freeze: {e}")))?;
    // This task sleeps through the freeze with the rest of the agent.
    tokio::time::sleep(Duration::from_secs(seconds + 1)).await;
    Ok(())
}

/// Whether `pid` runs a postmaster (a postgres whose parent is not postgres).
fn is_postmaster(pid: i32) -> bool {
    let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok()));
    comm(pid).trim() == "postgres" && ppid.is_some_and(|pp| comm(pp).trim() != "postgres")
}
