//! The WAL archive: `pgrepl wal-push` (PostgreSQL's `archive_command`),
//! `pgrepl wal-fetch` (`restore_command`) and `pgrepl archive cleanup`.
//!
//! A segment reaches the archive only whole: it is copied to a temp file,
//! fsynced, renamed into place, and the directory fsynced — so a crash or a
//! kill mid-copy never leaves a partial file under a segment's name (seed
//! 001's `cp %p ...` can). Pushing a segment that is already archived with
//! the same content succeeds (PostgreSQL retries after crashes); different
//! content under the same name is refused loudly. These commands take the
//! archive dir on their command line and never read pgrepl.toml, which the
//! OS user PostgreSQL runs as may not be allowed to read.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Compare two files byte for byte.
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (ma, mb) = (fs::metadata(a).map_err(|e| Error::io(a, e))?, fs::metadata(b).map_err(|e| Error::io(b, e))?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (File::open(a).map_err(|e| Error::io(a, e))?, File::open(b).map_err(|e| Error::io(b, e))?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).map_err(|e| Error::io(a, e))?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n]).map_err(|e| Error::io(b, e))?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Copy `src` to `dst` durably: temp file, fsync, rename, fsync the dir.
fn copy_durably(src: &Path, dst: &Path) -> Result<u64> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    let name = dst.file_name().and_then(|n| n.to_str()).unwrap_or("wal");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut input = File::open(src).map_err(|e| Error::io(src, e))?;
    let mut out =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let copied = std::io::copy(&mut input, &mut out).map_err(|e| Error::io(&tmp, e));
    let synced = copied.and_then(|n| out.sync_all().map(|_| n).map_err(|e| Error::io(&tmp, e)));
    let n = match synced {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    drop(out);
    fs::rename(&tmp, dst).map_err(|e| Error::io(dst, e))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    Ok(n)
}

/// `wal-push PATH NAME`: archive one WAL file.
pub(crate) fn push(archive: &Path, path: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let dst = archive.join(name);
    if dst.exists() {
        return if same_content(path, &dst)? {
            // PostgreSQL re-archives after a crash; the same bytes are already safe.
            Ok(())
        } else {
            Err(Error::Other(format!(
                "wal-push: {} already exists in the archive with different content; refusing to overwrite it. Two clusters may be archiving into {}: give each its own [archive] dir",
                name,
                archive.display()
            )))
        };
    }
    copy_durably(path, &dst).map(|_| ())
}

/// `wal-fetch NAME PATH`: restore one WAL file. A missing file is not an
/// error worth a message: PostgreSQL asks for files that do not exist yet.
pub(crate) fn fetch(archive: &Path, name: &str, path: &Path) -> Result<bool> {
    check_name(name)?;
    let src = archive.join(name);
    if !src.is_file() {
        return Ok(false);
    }
    copy_durably(&src, path).map(|_| true)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::Usage(format!("`{name}` is not a WAL file name")));
    }
    Ok(())
}

/// True for a WAL segment name (24 hex digits).
pub(crate) fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit())
}

/// What `cleanup` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Cleanup {
    pub removed: usize,
    pub bytes: u64,
    pub kept: usize,
}

/// Remove segments logically before `oldest_needed` (pg_archivecleanup's
/// rule: compare the log and segment parts, ignore the timeline; keep
/// history and backup-label files).
pub(crate) fn cleanup(archive: &Path, oldest_needed: &str) -> Result<Cleanup> {
    if !is_segment(oldest_needed) {
        return Err(Error::Usage(format!("`{oldest_needed}` is not a WAL segment name")));
    }
    let mut c = Cleanup::default();
    for e in fs::read_dir(archive).map_err(|e| Error::io(archive, e))?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if is_segment(&name) && name[8..] < oldest_needed[8..] {
            c.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            c.removed += 1;
        } else {
            c.kept += 1;
        }
    }
    Ok(c)
}

/// The WAL segment holding `lsn` (16 MB segments, pgrepl's initdb default).
/// Only the log and segment parts matter to [`cleanup`], so the timeline is 1.
pub(crate) fn segment_of(lsn: crate::domain::lsn::Lsn) -> String {
    format!("{:08X}{:08X}{:08X}", 1, lsn.0 >> 32, (lsn.0 & 0xffff_ffff) >> 24)
}

/// `pgrepl archive cleanup`: keep what the primary and every standby may
/// still need — the oldest of the slots' restart_lsn, the streaming
/// replicas' replay position, the primary's last checkpoint redo, and the
/// last checkpoint redo of stopped local standbys — and remove the rest.
pub(crate) async fn cleanup_cluster(ctx: &crate::store::ctx::Ctx, out: &crate::output::Output) -> Result<()> {
    let Some(archive) = &ctx.cfg.archive else {
        return Err(Error::Usage(format!(
            "{} has no [archive] dir; there is nothing to clean up",
            ctx.cfg.path.display()
        )));
    };
    // What a stopped standby still needs is in its control file, which only
    // its own host can read: across hosts this would remove WAL it needs.
    if ctx.cfg.etcd.is_some() {
        return Err(Error::Refused(
            "`archive cleanup` works on one machine only: across hosts it cannot read what stopped standbys on other hosts still need; nothing removed".into(),
        ));
    }
    let primary = crate::store::view::ClusterView::read(ctx)?.primary;
    let c = ctx.connect(&primary).await?;
    let row = c
        .query_one(
            "SELECT min(lsn)::text FROM (
                SELECT restart_lsn AS lsn FROM pg_replication_slots WHERE restart_lsn IS NOT NULL
                UNION ALL SELECT replay_lsn FROM pg_stat_replication WHERE replay_lsn IS NOT NULL
                UNION ALL SELECT redo_lsn FROM pg_control_checkpoint()) s",
            &[],
        )
        .await
        .map_err(|e| Error::sql("finding the oldest WAL still needed", e))?;
    let mut oldest: Option<crate::domain::lsn::Lsn> = row.get::<_, Option<String>>(0).and_then(|s| s.parse().ok());
    for n in ctx.cfg.nodes.iter().filter(|n| n.name != primary.name) {
        if n.data_dir.join("PG_VERSION").exists() && crate::pg::datadir::running_postmaster(&n.data_dir).is_none() {
            let redo = crate::pg::controlfile::read(&n.data_dir)?.redo;
            oldest = Some(oldest.map_or(redo, |o| o.min(redo)));
        }
    }
    let oldest =
        oldest.ok_or_else(|| Error::Other("cannot tell which WAL the cluster still needs; nothing removed".into()))?;
    let keep_from = segment_of(oldest);
    let r = cleanup(archive, &keep_from)?;
    out.info(format!(
        "archive cleanup: removed {} segments ({:.1} MB) older than {keep_from}, the oldest still needed; kept {} files",
        r.removed,
        r.bytes as f64 / 1048576.0,
        r.kept
    ));
    Ok(())
}

/// The archive command for postgresql.conf (pgrepl's own binary, absolute).
pub(crate) fn archive_command(exe: &Path, archive: &Path) -> String {
    format!("{} wal-push --archive {} %p %f", shell_word(exe), shell_word(archive))
}

/// The restore command for standbys.
pub(crate) fn restore_command(exe: &Path, archive: &Path) -> String {
    format!("{} wal-fetch --archive {} %f %p", shell_word(exe), shell_word(archive))
}

fn shell_word(p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
fn write_file(p: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = File::create(p).map_err(|e| Error::io(p, e))?;
    f.write_all(data).map_err(|e| Error::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_is_idempotent_and_refuses_different_content() {
        let d = tempfile::tempdir().unwrap();
        let arch = d.path().join("archive");
        fs::create_dir(&arch).unwrap();
        let seg = d.path().join("000000010000000000000003");
        write_file(&seg, &[7u8; 4096]).unwrap();
        push(&arch, &seg, "000000010000000000000003").unwrap();
        push(&arch, &seg, "000000010000000000000003").unwrap();
        write_file(&seg, &[8u8; 4096]).unwrap();
        let e = push(&arch, &seg, "000000010000000000000003").unwrap_err().to_string();
        assert!(e.contains("already exists in the archive with different content"), "{e}");
        let names: Vec<_> = fs::read_dir(&arch).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "no temp files left: {names:?}");
    }

    #[test]
    fn fetch_copies_or_reports_missing() {
        let d = tempfile::tempdir().unwrap();
        write_file(&d.path().join("000000010000000000000001"), b"wal").unwrap();
        let out = d.path().join("RECOVERYXLOG");
        assert!(fetch(d.path(), "000000010000000000000001", &out).unwrap());
        assert_eq!(fs::read(&out).unwrap(), b"wal");
        assert!(!fetch(d.path(), "000000010000000000000009", &out).unwrap());
    }

    #[test]
    fn cleanup_removes_what_precedes_ignoring_timeline_and_keeps_history() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000020000000000000003",
            "00000002.history",
            "000000010000000000000004",
        ] {
            write_file(&d.path().join(n), b"x").unwrap();
        }
        let c = cleanup(d.path(), "000000020000000000000003").unwrap();
        assert_eq!(c, Cleanup { removed: 2, bytes: 2, kept: 3 });
        assert!(d.path().join("00000002.history").exists());
    }

    #[test]
    fn commands_quote_paths() {
        assert_eq!(
            archive_command(Path::new("/usr/bin/pgrepl"), Path::new("/srv/wal archive")),
            "/usr/bin/pgrepl wal-push --archive '/srv/wal archive' %p %f"
        );
        assert_eq!(
            restore_command(Path::new("/usr/bin/pgrepl"), Path::new("/srv/arch")),
            "/usr/bin/pgrepl wal-fetch --archive /srv/arch %f %p"
        );
    }
}
