//! Seeding replicas at bootstrap from the primary's fresh initdb.
//!
//! A freshly initdb'd, cleanly shut-down data dir is a valid standby base:
//! a copy has the same system identifier, and a standby started on it
//! begins recovery at the shutdown checkpoint and streams everything after
//! it (roles, databases, schema) from the primary, whose slots and
//! `wal_keep_size` keep that WAL. So a new cluster's replicas need no base
//! backup of a running primary. One copy is made while the primary is
//! stopped; the others are made from that copy while the primary starts,
//! and the replicas start while the primary runs its bootstrap SQL. Each copy is built in the clone staging dir and
//! renamed into place, so an interrupted seed leaves what an interrupted
//! clone leaves (and is redone the same way).

use std::path::{Path, PathBuf};

use crate::config::{Node, Role};
use crate::error::{Error, Result};
use crate::ops::configure::write_node_files;
use crate::output::Output;
use crate::pg::datadir::staging_path;
use crate::store::ctx::Ctx;

/// Copy the shut-down `primary`'s data dir once, to the staging dir of the
/// last of `replicas`: the primary may start again as soon as this returns,
/// and the other copies are made from this one ([`place`]) meanwhile.
pub(crate) async fn snapshot(ctx: &Ctx, primary: &Node, replicas: &[Node]) -> Result<std::path::PathBuf> {
    let last = replicas.last().ok_or_else(|| Error::Other("seeding without a replica".into()))?;
    let (src, dst, runas) = (primary.data_dir.clone(), staging_path(&last.data_dir, "clone"), ctx.runas.clone());
    tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf> {
        if dst.exists() {
            std::fs::remove_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
        }
        // The primary waits for this copy alone: every core works on it.
        copy_dir(&src, &dst, &runas, workers_for(1))?;
        Ok(dst)
    })
    .await
    .map_err(|e| Error::Other(format!("seeding task failed: {e}")))?
}

/// From the snapshot (the last replica's staging dir), make every other
/// replica's copy in parallel, sync once per filesystem, write each one's
/// standby files and rename it into place.
pub(crate) async fn place(ctx: &Ctx, snapshot: &Path, primary: &Node, replicas: &[Node], out: &Output) -> Result<()> {
    let t0 = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let others = &replicas[..replicas.len().saturating_sub(1)];
    let workers = workers_for(others.len());
    for r in others {
        let (src, dst) = (snapshot.to_path_buf(), staging_path(&r.data_dir, "clone"));
        let runas = ctx.runas.clone();
        set.spawn_blocking(move || -> Result<()> {
            if dst.exists() {
                std::fs::remove_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
            }
            copy_dir(&src, &dst, &runas, workers)
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| Error::Other(format!("seeding task failed: {e}")))??;
    }
    let copied = t0.elapsed();
    // One sync per filesystem instead of one per file (after the first,
    // a replica on the same filesystem finds nothing left to write).
    for r in replicas {
        let dst = staging_path(&r.data_dir, "clone");
        let d = std::fs::File::open(&dst).map_err(|e| Error::io(&dst, e))?;
        nix::unistd::syncfs(&d).map_err(|e| Error::io(&dst, e.into()))?;
    }
    out.info(format!(
        "seeded {} replica(s) from {}'s fresh initdb (no base backup needed): copied in {:.2}s, synced in {:.2}s",
        replicas.len(),
        primary.name,
        copied.as_secs_f64(),
        (t0.elapsed() - copied).as_secs_f64()
    ));
    for r in replicas {
        let staging = staging_path(&r.data_dir, "clone");
        write_node_files(ctx, r, &staging, Role::Replica, primary)?;
        if r.data_dir.exists() {
            // Missing or empty (preflight checked): an empty dir makes way.
            std::fs::remove_dir(&r.data_dir).map_err(|e| Error::io(&r.data_dir, e))?;
        }
        std::fs::rename(&staging, &r.data_dir).map_err(|e| Error::io(&r.data_dir, e))?;
    }
    Ok(())
}

/// Log in to `primary` over the network the way a seeded standby's WAL
/// receiver will (replication role, password, `[tls]`), and ask
/// IDENTIFY_SYSTEM: a seeded standby gets no base backup that would have
/// found a wrong password, pg_hba entry or certificate, so this finds it,
/// with the same message a clone would give, instead of a standby that
/// never streams.
pub(crate) async fn check_login(ctx: &Ctx, primary: &Node, replica: &Node) -> Result<()> {
    let t = crate::ops::clone::replication_target(ctx, primary, &replica.name);
    let r = tokio::task::spawn_blocking(move || {
        let mut c = crate::pg::wire::ReplConn::connect(&t, std::time::Duration::from_secs(10))?;
        c.simple("IDENTIFY_SYSTEM").map(|_| ())
    })
    .await
    .map_err(|e| Error::Other(format!("login check failed: {e}")))?;
    r.map_err(|e| {
        let why = format!(
            "node {}: the replication login to the primary {} as `{}` failed: {e}",
            replica.name, primary.name, ctx.cfg.replication.user
        );
        if e.is_auth() {
            Error::Authentication(format!(
                "{why}. Check that [replication] password_file holds the password the cluster was bootstrapped with"
            ))
        } else {
            Error::Other(why)
        }
    })
}

/// Whether a standby seeded from a fresh initdb whose pg_control records
/// `minimums` may start with these settings as they are: the effective
/// value of each (pgrepl's `postgresql.conf` over initdb's
/// `postgresql.base.conf`, else PostgreSQL's default) is at least the
/// recorded one. When it is not, the primary is started and stopped once
/// first, so pg_control records the configured values.
pub(crate) fn limits_suffice(minimums: &[(String, i64)], conf: &str, base: &str) -> bool {
    let (ours, theirs) = (settings(conf), settings(base));
    minimums.iter().all(|(name, min)| {
        let default = match name.as_str() {
            "max_connections" => 100,
            "max_worker_processes" => 8,
            "max_wal_senders" => 10,
            "max_prepared_transactions" => 0,
            _ => 64,
        };
        let v = ours.get(name).or_else(|| theirs.get(name)).and_then(|v| v.parse::<i64>().ok()).unwrap_or(default);
        v >= *min
    })
}

/// `name = value` settings of a postgresql.conf, comments and quotes stripped.
fn settings(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('\'').to_string()))
        })
        .collect()
}

/// Copy a data dir: directories 0700, files with their modes, symlinks as
/// links, everything owned by the OS user PostgreSQL runs as. The tree is
/// made first, then `workers` threads copy the files: creating a file can
/// cost a third of a millisecond of kernel time (measured on the ext4 of
/// our CI machines), which for a fresh cluster's ~1000 files is most of
/// the copy, and it scales with cores.
fn copy_dir(src: &Path, dst: &Path, runas: &crate::pg::os_user::RunAs, workers: usize) -> Result<()> {
    let mut files = Vec::new();
    make_tree(src, dst, runas, &mut files)?;
    let shares = by_directory(files, workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .iter()
            .map(|mine| s.spawn(move || mine.iter().try_for_each(|(from, to)| copy_file(from, to, runas))))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err(Error::Other("a copy thread panicked".into()))))
    })
}

/// Split `files` into `workers` shares of about equal size, keeping each
/// directory's files together: creating files in one directory takes that
/// directory's lock, so two threads in one directory mostly wait.
fn by_directory(files: Vec<(PathBuf, PathBuf)>, workers: usize) -> Vec<Vec<(PathBuf, PathBuf)>> {
    let mut dirs: std::collections::BTreeMap<PathBuf, Vec<(PathBuf, PathBuf)>> = Default::default();
    for f in files {
        dirs.entry(f.1.parent().map(Path::to_path_buf).unwrap_or_default()).or_default().push(f);
    }
    let mut dirs: Vec<_> = dirs.into_values().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    let mut shares: Vec<Vec<(PathBuf, PathBuf)>> = vec![Vec::new(); workers.max(1)];
    for d in dirs {
        // The biggest directory left goes to the least-loaded share.
        shares.iter_mut().min_by_key(|s| s.len()).expect("one share at least").extend(d);
    }
    shares.retain(|s| !s.is_empty());
    shares
}

/// Threads for one copy when `copies` run at once: enough to keep every
/// core creating files.
fn workers_for(copies: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores.max(2) / copies.max(1)).max(1)
}

/// Make `dst`'s directories and symlinks like `src`'s, and list the files
/// to copy into `files`.
fn make_tree(
    src: &Path,
    dst: &Path,
    runas: &crate::pg::os_user::RunAs,
    files: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dst).map_err(|e| Error::io(dst, e))?;
    runas.chown(dst)?;
    for e in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let e = e.map_err(|e| Error::io(src, e))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let kind = e.file_type().map_err(|e| Error::io(&from, e))?;
        if kind.is_dir() {
            make_tree(&from, &to, runas, files)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io(&from, e))?;
            std::os::unix::fs::symlink(target, &to).map_err(|e| Error::io(&to, e))?;
            if runas.switch {
                std::os::unix::fs::lchown(&to, Some(runas.uid), Some(runas.gid)).map_err(|e| Error::io(&to, e))?;
            }
        } else {
            files.push((from, to));
        }
    }
    Ok(())
}

/// Copy one file of a data dir and give it to the OS user.
fn copy_file(from: &Path, to: &Path, runas: &crate::pg::os_user::RunAs) -> Result<()> {
    if from.parent().is_some_and(|p| p.ends_with("pg_wal")) {
        // WAL segments are zero-filled past their last record.
        copy_sparse(from, to)?;
    } else {
        // In-kernel (copy_file_range): relation files have few zero pages.
        std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
    }
    runas.chown(to)
}

/// Copy a file, leaving its all-zero 8 kB blocks as holes: a fresh WAL
/// segment is mostly zero-filled, and a hole reads back as the same zeros,
/// so the copy means the same and writes less. Keeps the file's mode.
fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 8192;
    fn io(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
        move |e| Error::io(p, e)
    }
    let mut src = std::fs::File::open(from).map_err(io(from))?;
    let meta = src.metadata().map_err(io(from))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
    let mut dst = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(to).map_err(io(to))?;
    let mut buf = vec![0u8; 16 * BLOCK];
    loop {
        let n = src.read(&mut buf).map_err(io(from))?;
        if n == 0 {
            break;
        }
        for chunk in buf[..n].chunks(BLOCK) {
            if chunk.iter().all(|&b| b == 0) {
                dst.seek(SeekFrom::Current(chunk.len() as i64)).map_err(io(to))?;
            } else {
                dst.write_all(chunk).map_err(io(to))?;
            }
        }
    }
    // A trailing hole needs the length set explicitly.
    dst.set_len(meta.len()).map_err(io(to))
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
        let runas = crate::pg::os_user::RunAs { name: "me".into(), uid: 0, gid: 0, switch: false };
        let dst = t.path().join("dst");
        copy_dir(&src, &dst, &runas, 3).unwrap();
        assert_eq!(std::fs::read(dst.join("base/1/123")).unwrap(), b"page");
        assert_eq!(std::fs::metadata(dst.join("base/1/123")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_link(dst.join("link")).unwrap(), Path::new("/somewhere"));
    }

    #[test]
    fn copy_shares_keep_each_directory_whole() {
        let f = |d: &'static str, n: usize| {
            (0..n).map(move |i| (PathBuf::from(format!("s/{d}/{i}")), PathBuf::from(format!("d/{d}/{i}"))))
        };
        let files: Vec<_> = f("base/1", 300).chain(f("base/4", 290)).chain(f("global", 60)).chain(f("x", 1)).collect();
        let shares = by_directory(files, 2);
        assert_eq!(shares.len(), 2);
        assert_eq!(shares.iter().map(Vec::len).sum::<usize>(), 651);
        let dirs = |s: &Vec<(PathBuf, PathBuf)>| {
            s.iter().map(|(_, to)| to.parent().unwrap().to_path_buf()).collect::<std::collections::BTreeSet<_>>()
        };
        assert!(dirs(&shares[0]).is_disjoint(&dirs(&shares[1])), "a directory split between threads");
        // More workers than directories: no empty share.
        assert_eq!(by_directory(f("a", 3).collect(), 4).len(), 1);
    }

    #[test]
    fn a_seeded_standby_needs_settings_at_least_those_initdb_recorded() {
        let recorded = |c: i64| {
            vec![
                ("max_connections".to_string(), c),
                ("max_wal_senders".to_string(), 10),
                ("max_worker_processes".to_string(), 8),
            ]
        };
        let base = "max_connections = 100\t\t\t# (change requires restart)\n#max_wal_senders = 10\n";
        // Unset here: initdb's base conf or PostgreSQL's default applies.
        assert!(limits_suffice(&recorded(100), "port = 5432    # why\n", base));
        // Lowered here: the standby would refuse to start.
        assert!(!limits_suffice(&recorded(100), "max_connections = '30'    # set in pgrepl.toml\n", base));
        assert!(!limits_suffice(&recorded(100), "max_wal_senders = 7    # 3 + 2 x replicas\n", base));
        assert!(limits_suffice(&recorded(30), "max_connections = 30\n", base));
    }

    #[test]
    fn a_sparse_copy_reads_back_byte_for_byte() {
        let t = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 5 * 8192 + 100];
        data[10] = 1;
        data[3 * 8192 + 5] = 7;
        std::fs::write(t.path().join("a"), &data).unwrap();
        copy_sparse(&t.path().join("a"), &t.path().join("b")).unwrap();
        assert_eq!(std::fs::read(t.path().join("b")).unwrap(), data);
        // All zeros, ending in a hole.
        std::fs::write(t.path().join("z"), vec![0u8; 3 * 8192]).unwrap();
        copy_sparse(&t.path().join("z"), &t.path().join("y")).unwrap();
        assert_eq!(std::fs::read(t.path().join("y")).unwrap(), vec![0u8; 3 * 8192]);
    }
}
