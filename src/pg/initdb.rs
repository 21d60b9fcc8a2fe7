//! `initdb` for a new primary. It builds into a staging dir beside the
//! target and renames it into place, so a killed initdb never leaves a
//! half-made data dir under the real name.

use std::path::Path;

use super::bin::PgBin;
use super::datadir::staging_path;
use super::process::{command, run_captured};
use crate::error::{Error, Result};
use crate::pg::os_user::RunAs;

/// Make everything written under `dir` durable: one `syncfs` of its filesystem.
pub(crate) fn sync(dir: &Path) -> Result<()> {
    let d = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    nix::unistd::syncfs(&d).map_err(|e| Error::io(dir, e.into()))
}

/// Create a new cluster in `dir` (which must not exist), not yet synced:
/// call [`sync`] before it first starts.
pub(crate) async fn initdb(bin: &PgBin, runas: &RunAs, dir: &Path) -> Result<()> {
    let staging = staging_path(dir, "initdb");
    if staging.exists() {
        // Only pgrepl uses this name, so this is our own interrupted initdb.
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    let mut cmd = command(bin, runas, "initdb");
    cmd.arg("-D")
        .arg(&staging)
        .arg(format!("--username={}", runas.name))
        // pg_hba is replaced by pgrepl's own right after; until then nothing
        // but the socket may log in.
        .arg("--auth-local=peer")
        .arg("--auth-host=reject")
        // Checksums let pg_rewind work and catch storage corruption.
        .arg("--data-checksums")
        .arg("--encoding=UTF8")
        .arg("--no-locale")
        // The caller syncs the filesystem once ([`sync`]) before the first
        // start, instead of initdb's fsync of every file, which costs a
        // second on a slow disk: the same durability, once, and shared
        // with the seed copies made beside it.
        .arg("--no-sync");
    run_captured(cmd, "initdb").await?;
    std::fs::rename(&staging, dir).map_err(|e| Error::io(dir, e))?;
    let base = dir.join(super::conf::BASE_FILE);
    std::fs::rename(dir.join("postgresql.conf"), &base).map_err(|e| Error::io(&base, e))?;
    Ok(())
}
