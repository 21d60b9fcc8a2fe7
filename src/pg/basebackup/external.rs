//! `pg_basebackup` into a staging dir, with progress reported as it runs
//! and its stderr sorted into a [`CloneFailure`].

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::{CloneFailure, CloneSource, Progress};
use crate::error::Error;
use crate::pg::bin::PgBin;
use crate::pg::os_user::RunAs;
use crate::pg::process::command;

/// Parse one `pg_basebackup -P` progress line: `  1234/22966 kB (5%), 0/1 tablespace`.
pub(super) fn parse_progress(line: &str) -> Option<Progress> {
    let (nums, _) = line.trim().split_once(" kB")?;
    let (done, total) = nums.trim().split_once('/')?;
    Some(Progress { done_kb: done.trim().parse().ok()?, total_kb: total.trim().parse().ok()? })
}

/// Sort pg_basebackup's stderr into a [`CloneFailure`].
pub(super) fn classify(stderr: &str, status: &str) -> CloneFailure {
    let s = stderr.to_lowercase();
    if s.contains("password authentication failed")
        || s.contains("no pg_hba.conf entry")
        || s.contains("no password supplied")
    {
        return CloneFailure::Auth(stderr.trim().to_string());
    }
    let transient = [
        "could not connect",
        "connection refused",
        "timeout expired",
        "the database system is starting up",
        "the database system is shutting down",
        "no route to host",
        "could not translate host name",
    ];
    if transient.iter().any(|t| s.contains(t)) {
        return CloneFailure::Unreachable(stderr.trim().to_string());
    }
    CloneFailure::Other(Error::Subprocess {
        program: "pg_basebackup".into(),
        status: status.into(),
        stderr: stderr.to_string(),
    })
}

/// Run one clone attempt into `target` (which must be empty or missing).
pub(super) async fn run(
    bin: &PgBin,
    runas: &RunAs,
    src: &CloneSource<'_>,
    target: &Path,
    mut on_progress: impl FnMut(Progress),
) -> std::result::Result<(), CloneFailure> {
    let mut cmd = command(bin, runas, "pg_basebackup");
    if let Some(t) = &src.target.tls {
        for (k, v) in crate::pg::tls::libpq_params(t, src.root_cert) {
            cmd.env(format!("PG{}", k.to_uppercase()), v);
        }
    }
    if let Some(o) = &src.target.options {
        cmd.env("PGOPTIONS", o);
    }
    cmd.env("PGPASSFILE", src.passfile)
        .arg("-h")
        .arg(&src.target.host)
        .arg("-p")
        .arg(src.target.port.to_string())
        .arg("-U")
        .arg(&src.target.user)
        .arg("-D")
        .arg(target)
        .args(["-X", "stream", "-c", "fast", "-P", "--no-password"]);
    if let Some(slot) = src.slot {
        // Stream WAL through the replica's own slot so nothing it needs is
        // recycled between the backup and the standby's first connection.
        cmd.arg("-S").arg(slot);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    // If pgrepl dies mid-clone, the copy must die too: the next `up` removes
    // the staging dir and starts over, and nothing may still be writing to it.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        CloneFailure::Other(Error::Subprocess {
            program: "pg_basebackup".into(),
            status: format!("could not start: {e}"),
            stderr: String::new(),
        })
    })?;
    let mut stderr =
        child.stderr.take().ok_or_else(|| CloneFailure::Other(Error::Other("pg_basebackup stderr missing".into())))?;
    let mut text = String::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stderr.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        // Progress lines end in '\r', messages in '\n'.
        while let Some(i) = pending.iter().position(|b| *b == b'\r' || *b == b'\n') {
            let line = String::from_utf8_lossy(&pending[..i]).into_owned();
            pending.drain(..=i);
            match parse_progress(&line) {
                Some(p) => on_progress(p),
                None if !line.trim().is_empty() => {
                    text.push_str(&line);
                    text.push('\n');
                }
                None => {}
            }
        }
    }
    text.push_str(&String::from_utf8_lossy(&pending));
    let status = child.wait().await.map_err(|e| CloneFailure::Other(Error::io(target, e)))?;
    if status.success() {
        Ok(())
    } else {
        Err(classify(&text, &status.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse() {
        assert_eq!(
            parse_progress("  1234/22966 kB (5%), 0/1 tablespace"),
            Some(Progress { done_kb: 1234, total_kb: 22966 })
        );
        assert_eq!(parse_progress("pg_basebackup: initiating base backup"), None);
    }

    #[test]
    fn failures_are_sorted() {
        assert!(matches!(
            classify(
                "pg_basebackup: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
                "1"
            ),
            CloneFailure::Unreachable(_)
        ));
        assert!(matches!(
            classify("FATAL:  password authentication failed for user \"replicator\"", "1"),
            CloneFailure::Auth(_)
        ));
        assert!(matches!(
            classify("pg_basebackup: error: directory exists but is not empty", "1"),
            CloneFailure::Other(_)
        ));
    }
}
