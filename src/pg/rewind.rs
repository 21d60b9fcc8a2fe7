//! `pg_rewind`: resynchronise a diverged former primary from the current
//! primary, as the OS user. On one machine the source is reached over its
//! Unix socket as the superuser (so no password is involved); across hosts
//! over TCP as [`ROLE`], a login role granted only the four functions
//! pg_rewind calls, its password read from the 0600 passfile.

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

/// The role pg_rewind logs in as across hosts.
pub(crate) const ROLE: &str = "pgrepl_rewind";

/// What pg_rewind needs of a non-superuser source role (PostgreSQL 11+).
pub(crate) const GRANTS: &str =
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO pgrepl_rewind;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO pgrepl_rewind;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO pgrepl_rewind;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO pgrepl_rewind;";

/// Where pg_rewind reads the source from: a libpq connection string with
/// no password in it (`--source-server` is visible in `ps`).
pub(crate) struct Source(pub String);

impl Source {
    /// The source's Unix socket, as the superuser.
    pub(crate) fn socket(socket_dir: &Path, port: u16, superuser: &str) -> Source {
        Source(format!("host={} port={port} user={superuser} dbname=postgres", socket_dir.display()))
    }

    /// The source over TCP as [`ROLE`]; `extra` is `passfile=…` and the
    /// TLS parameters.
    pub(crate) fn tcp(host: &str, port: u16, extra: &[(&str, String)]) -> Source {
        let mut s = format!("host={host} port={port} user={ROLE} dbname=postgres");
        for (k, v) in extra {
            s.push_str(&format!(" {k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")));
        }
        Source(s)
    }
}

/// Rewind `target` from `source`. `dry_run` only checks.
pub(crate) async fn rewind(
    bin: &PgBin,
    runas: &RunAs,
    target: &Path,
    source: &Source,
    dry_run: bool,
) -> Result<Rewound> {
    bin.require_matched(&["pg_rewind"], "pg_rewind")?;
    let mut cmd = command(bin, runas, "pg_rewind");
    cmd.arg("--target-pgdata").arg(target).arg(format!("--source-server={}", source.0)).arg("--progress");
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
