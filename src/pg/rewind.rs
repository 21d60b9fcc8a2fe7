//! `pg_rewind`: resynchronise a diverged former primary from the current
//! primary, as the OS user, with the source reached over its Unix socket as
//! the superuser (so no password is involved).

use std::path::Path;

use super::bin::PgBin;
use super::process::{command, run_captured};
use crate::error::Result;
use crate::pg::os_user::RunAs;

/// What pg_rewind did; each carries pg_rewind's own account (its
/// `pg_rewind:` lines, without the progress counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rewound {
    /// The target had not diverged.
    NotNeeded(String),
    /// The target had diverged and was (or, in a dry run, would be) rewound.
    Done(String),
}

/// Rewind `target` from the server at `socket_dir:port`. `dry_run` only checks.
pub(crate) async fn rewind(
    bin: &PgBin,
    runas: &RunAs,
    target: &Path,
    socket_dir: &Path,
    port: u16,
    superuser: &str,
    dry_run: bool,
) -> Result<Rewound> {
    bin.require_matched(&["pg_rewind"], "pg_rewind")?;
    let mut cmd = command(bin, runas, "pg_rewind");
    cmd.arg("--target-pgdata")
        .arg(target)
        .arg(format!("--source-server=host={} port={port} user={superuser} dbname=postgres", socket_dir.display()))
        .arg("--progress");
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = run_captured(cmd, "pg_rewind").await?;
    Ok(interpret(&out))
}

/// pg_rewind prints "no rewind required" when the timelines never diverged.
pub(crate) fn interpret(stdout_and_stderr: &str) -> Rewound {
    let account: Vec<&str> = stdout_and_stderr
        .lines()
        .filter(|l| l.starts_with("pg_rewind:"))
        .map(|l| l.trim_start_matches("pg_rewind:").trim())
        .collect();
    let account = account.join("; ");
    if stdout_and_stderr.contains("no rewind required") {
        Rewound::NotNeeded(account)
    } else {
        Rewound::Done(account)
    }
}
