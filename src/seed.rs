//! Seeding replicas at bootstrap from the primary's fresh initdb.
//!
//! A freshly initdb'd, cleanly shut-down data dir is a valid standby base:
//! a copy has the same system identifier, and a standby started on it
//! begins recovery at the shutdown checkpoint and streams everything after
//! it (roles, databases, schema) from the primary, whose slots and
//! `wal_keep_size` keep that WAL. So a new cluster's replicas need no base
//! backup of a running primary: the copies are made before the primary
//! first starts, in parallel, and the replicas start while the primary runs
//! its bootstrap SQL. Each copy is built in the clone staging dir and
//! renamed into place, so an interrupted seed leaves what an interrupted
//! clone leaves (and is redone the same way).

use std::path::Path;

use crate::config::{Node, Role};
use crate::configure::write_node_files;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::pg::datadir::staging_path;
use crate::supervise::Output;

/// Copy the shut-down `primary`'s data dir into place for each of `replicas`
/// (whose dirs are missing or empty), with their standby files.
pub async fn seed(ctx: &Ctx, primary: &Node, replicas: &[Node], out: &Output) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for r in replicas {
        let (src, dst) = (primary.data_dir.clone(), staging_path(&r.data_dir, "clone"));
        let runas = ctx.runas.clone();
        set.spawn_blocking(move || -> Result<()> {
            if dst.exists() {
                std::fs::remove_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
            }
            copy_dir(&src, &dst, &runas)?;
            // One sync of the filesystem instead of one per file.
            let d = std::fs::File::open(&dst).map_err(|e| Error::io(&dst, e))?;
            nix::unistd::syncfs(&d).map_err(|e| Error::io(&dst, e.into()))
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| Error::Other(format!("seeding task failed: {e}")))??;
    }
    for r in replicas {
        let staging = staging_path(&r.data_dir, "clone");
        write_node_files(ctx, r, &staging, Role::Replica, primary)?;
        if r.data_dir.exists() {
            // Missing or empty (preflight checked): an empty dir makes way.
            std::fs::remove_dir(&r.data_dir).map_err(|e| Error::io(&r.data_dir, e))?;
        }
        std::fs::rename(&staging, &r.data_dir).map_err(|e| Error::io(&r.data_dir, e))?;
        out.info(format!("{}: seeded from {}'s fresh initdb (no base backup needed)", r.name, primary.name));
    }
    Ok(())
}

/// Copy a data dir: directories 0700, files with their modes, symlinks as
/// links, everything owned by the OS user PostgreSQL runs as.
fn copy_dir(src: &Path, dst: &Path, runas: &crate::os_user::RunAs) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dst).map_err(|e| Error::io(dst, e))?;
    runas.chown(dst)?;
    for e in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let e = e.map_err(|e| Error::io(src, e))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let kind = e.file_type().map_err(|e| Error::io(&from, e))?;
        if kind.is_dir() {
            copy_dir(&from, &to, runas)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io(&from, e))?;
            std::os::unix::fs::symlink(target, &to).map_err(|e| Error::io(&to, e))?;
            if runas.switch {
                std::os::unix::fs::lchown(&to, Some(runas.uid), Some(runas.gid)).map_err(|e| Error::io(&to, e))?;
            }
        } else {
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
            runas.chown(&to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_keeps_contents_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("base/1")).unwrap();
        std::fs::write(src.join("base/1/123"), b"page").unwrap();
        std::fs::set_permissions(src.join("base/1/123"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/somewhere", src.join("link")).unwrap();
        let runas = crate::os_user::RunAs { name: "me".into(), uid: 0, gid: 0, switch: false };
        let dst = t.path().join("dst");
        copy_dir(&src, &dst, &runas).unwrap();
        assert_eq!(std::fs::read(dst.join("base/1/123")).unwrap(), b"page");
        assert_eq!(std::fs::metadata(dst.join("base/1/123")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_link(dst.join("link")).unwrap(), Path::new("/somewhere"));
    }
}
