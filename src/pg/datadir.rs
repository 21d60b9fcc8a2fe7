//! What is in a data directory, read from disk without starting anything:
//! its PostgreSQL major, its system identifier, and whether a postmaster is
//! running in it. Also the staging paths used so that a half-made dir is
//! never mistaken for a real one.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a node's data directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirState {
    /// Does not exist.
    Missing,
    /// Exists and is empty.
    Empty,
    /// A PostgreSQL data directory.
    Postgres { major: u32, system_id: u64 },
    /// Non-empty, but not a PostgreSQL data directory.
    Foreign,
}

/// Inspect `dir`.
pub(crate) fn inspect(dir: &Path) -> Result<DirState> {
    if !dir.exists() {
        return Ok(DirState::Missing);
    }
    if !crate::pg::fsutil::is_non_empty_dir(dir) {
        return Ok(if dir.is_dir() { DirState::Empty } else { DirState::Foreign });
    }
    let Ok(ver) = std::fs::read_to_string(dir.join("PG_VERSION")) else {
        return Ok(DirState::Foreign);
    };
    let Ok(major) = ver.trim().split('.').next().unwrap_or("").parse::<u32>() else {
        return Ok(DirState::Foreign);
    };
    match system_id(dir) {
        Ok(system_id) => Ok(DirState::Postgres { major, system_id }),
        Err(_) => Ok(DirState::Foreign),
    }
}

/// The system identifier: the first 8 bytes of `global/pg_control`
/// (`ControlFileData.system_identifier`, native byte order).
pub fn system_id(dir: &Path) -> Result<u64> {
    let path = dir.join("global/pg_control");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Other(format!("{} is truncated", path.display())))?;
    Ok(u64::from_ne_bytes(head))
}

/// The lines of `postmaster.pid` pgrepl uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PidFile {
    pub pid: i32,
    pub port: Option<u16>,
    /// `starting`, `stopping`, `ready` or `standby` (PostgreSQL 10+).
    pub status: Option<String>,
}

/// Parse `postmaster.pid` text.
pub(crate) fn parse_pid_file(text: &str) -> Option<PidFile> {
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    Some(PidFile {
        pid,
        port: lines.get(3).and_then(|l| l.trim().parse().ok()),
        status: lines.get(7).map(|l| l.trim().to_string()).filter(|s| !s.is_empty()),
    })
}

/// Read `postmaster.pid` if present.
pub(crate) fn read_pid_file(dir: &Path) -> Option<PidFile> {
    std::fs::read_to_string(dir.join("postmaster.pid")).ok().and_then(|t| parse_pid_file(&t))
}

/// True if a process with this pid exists.
pub(crate) fn pid_alive(pid: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// The postmaster running in `dir`, if any. A stale pid file (dead pid) is
/// not a running server.
pub(crate) fn running_postmaster(dir: &Path) -> Option<PidFile> {
    let pf = read_pid_file(dir)?;
    // A pid can be reused after a crash; trust it only if it is a postgres.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pf.pid)).unwrap_or_default();
    (pid_alive(pf.pid) && !is_zombie(pf.pid) && (comm.is_empty() || comm.trim().starts_with("postgres"))).then_some(pf)
}

/// A zombie has exited; its parent just has not reaped it yet.
pub(crate) fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Stopped by a signal (SIGSTOP): a fence froze it, or someone did.
pub(crate) fn is_frozen(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with(['T', 't'])))
        .unwrap_or(false)
}

/// Where a clone or initdb is built before it is renamed into place. The
/// name marks it as pgrepl's own, so an interrupted one can be removed.
pub(crate) fn staging_path(dir: &Path, what: &str) -> PathBuf {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("node");
    parent.join(format!(".{name}.pgrepl-{what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_parses_ready_line() {
        let t = "4242\n/srv/data/pg-1\n1700000000\n15432\n/srv/data/sockets\n127.0.0.1\n  1234   5678\nready   \n";
        assert_eq!(parse_pid_file(t), Some(PidFile { pid: 4242, port: Some(15432), status: Some("ready".into()) }));
        assert_eq!(parse_pid_file("4242\n/d\n"), Some(PidFile { pid: 4242, port: None, status: None }));
        assert_eq!(parse_pid_file("not a pid\n"), None);
    }

    #[test]
    fn staging_sits_beside_the_dir() {
        assert_eq!(staging_path(Path::new("/srv/data/pg-2"), "clone"), PathBuf::from("/srv/data/.pg-2.pgrepl-clone"));
    }
}
