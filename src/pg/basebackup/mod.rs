//! Copying a primary's data dir for a new standby, by one of two methods:
//! the installed `pg_basebackup` (the default wherever it can copy the
//! server), or pgrepl's own client of the replication protocol (for a
//! server newer than every installed pg_basebackup, or when asked for).
//! Either way failures are sorted into "retry" (primary not reachable yet),
//! "authentication" (never retried) and everything else.

mod builtin;
mod external;

use std::path::Path;

pub(crate) use crate::domain::modes::CloneMethod as Method;
use crate::error::Error;
use crate::pg::bin::PgBin;
use crate::pg::os_user::RunAs;

/// Where to clone from. The built-in client uses the target's password
/// and never writes it anywhere; pg_basebackup reads it from `passfile`.
pub(crate) struct CloneSource<'a> {
    pub target: crate::pg::wire::Target,
    pub passfile: &'a Path,
    pub slot: Option<&'a str>,
    /// Where the client's copy of the `[tls]` CA is (for pg_basebackup).
    pub root_cert: &'a Path,
}

/// One progress report: kB done, kB total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub done_kb: u64,
    pub total_kb: u64,
}

/// How a failed clone should be handled.
#[derive(Debug)]
pub(crate) enum CloneFailure {
    /// The primary is not reachable (yet): retry with backoff.
    Unreachable(String),
    /// Wrong password or no pg_hba entry: retrying cannot help.
    Auth(String),
    /// Anything else.
    Other(Error),
}

/// Run one clone attempt into `target` (existing and empty) with a method
/// already resolved by [`Method::resolve`].
pub(crate) async fn clone(
    method: Method,
    bin: &PgBin,
    runas: &RunAs,
    src: &CloneSource<'_>,
    target: &Path,
    mut on_progress: impl FnMut(Progress),
) -> std::result::Result<(), CloneFailure> {
    if method != Method::Builtin {
        return external::run(bin, runas, src, target, on_progress).await;
    }
    let (from, slot) = (src.target.clone(), src.slot.map(str::to_string));
    let owner = runas.switch.then_some((runas.uid, runas.gid));
    let target = target.to_path_buf();
    // The copy blocks on the network and the disk, so it gets a thread;
    // progress comes back over a channel to the caller's task.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let job = tokio::task::spawn_blocking(move || {
        builtin::clone(&from, slot.as_deref(), &target, owner, |p| {
            let _ = tx.send(p);
        })
    });
    while let Some(p) = rx.recv().await {
        on_progress(p);
    }
    job.await.map_err(|e| CloneFailure::Other(Error::Other(format!("the base backup thread failed: {e}"))))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_follows_what_pg_basebackup_can_copy() {
        assert_eq!(Method::Auto.resolve(15, Some(15)), Ok(Method::PgBasebackup));
        assert_eq!(Method::Auto.resolve(11, Some(15)), Ok(Method::PgBasebackup));
        assert_eq!(Method::Auto.resolve(17, Some(15)), Ok(Method::Builtin));
        assert_eq!(Method::Auto.resolve(17, None), Ok(Method::Builtin));
        assert_eq!(Method::Builtin.resolve(15, Some(15)), Ok(Method::Builtin));
        let e = Method::PgBasebackup.resolve(17, Some(15)).unwrap_err();
        assert!(e.contains("from PostgreSQL 15, which cannot copy a PostgreSQL 17 server"), "{e}");
        assert!(Method::PgBasebackup.resolve(15, None).unwrap_err().contains("no pg_basebackup is installed"));
    }
}
