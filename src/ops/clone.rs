//! Making a replica's data dir: a base backup into a staging dir beside
//! the target, retried with backoff while the primary is unreachable, then
//! the standby config, then one rename into place. A clone interrupted at
//! any point leaves only the staging dir, which the next `up` removes and
//! redoes; postgres is never started on a half-copied dir.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{slot_name_for, Node, Role};
use crate::error::{Error, Result};
use crate::ops::configure::write_node_files;
use crate::output::Output;
use crate::pg::basebackup::{self, CloneFailure, CloneSource};
use crate::pg::datadir::staging_path;
use crate::store::ctx::Ctx;

/// Clone `node` from `primary`. With `move_aside`, the existing dir is
/// renamed to `<dir>.old-<unix time>` first.
pub(crate) async fn clone(
    ctx: &Ctx,
    node: &Node,
    primary: &Node,
    move_aside: bool,
    out: &Output,
    bar: Option<ProgressBar>,
) -> Result<()> {
    let staging = prepare_staging(ctx, node, move_aside, out).await?;
    let passfile = ctx.layout.passfile();
    let root_cert = ctx.layout.root_cert();
    let slot = slot_name_for(&ctx.cfg, node);
    let src = CloneSource {
        target: replication_target(ctx, primary, &format!("pgrepl_clone_{}", node.name)),
        passfile: &passfile,
        slot: slot.as_deref(),
        root_cert: &root_cert,
    };
    copy(ctx, node, primary, &src, &staging, out, &bar).await?;
    if let Some(b) = &bar {
        b.finish_with_message("cloned");
    }
    write_node_files(ctx, node, &staging, Role::Replica, primary)?;
    std::fs::rename(&staging, &node.data_dir).map_err(|e| Error::io(&node.data_dir, e))?;
    out.info(format!("{}: clone complete", node.name));
    Ok(())
}

/// The empty staging dir a clone is made in, beside the data dir: an
/// interrupted clone's is removed (it was ours), and with `move_aside` the
/// old data dir is renamed out of the way, never deleted.
async fn prepare_staging(ctx: &Ctx, node: &Node, move_aside: bool, out: &Output) -> Result<PathBuf> {
    let dir = &node.data_dir;
    let staging = staging_path(dir, "clone");
    if staging.exists() {
        out.info(format!(
            "{}: found an interrupted clone at {}; removing it and cloning again",
            node.name,
            staging.display()
        ));
        stop_writers(&staging).await;
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    if move_aside && dir.exists() {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let aside =
            dir.with_file_name(format!("{}.old-{secs}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("node")));
        std::fs::rename(dir, &aside).map_err(|e| Error::io(dir, e))?;
        out.info(format!("{}: moved the old data dir aside to {}", node.name, aside.display()));
    }
    crate::pg::fsutil::create_dir(&staging, 0o700)?;
    ctx.runas.chown(&staging)?;
    Ok(staging)
}

/// The base backup into `staging`, with the configured method, retried
/// with backoff while the primary is unreachable (it may still be
/// starting) until `clone_timeout`; a refused login is final.
async fn copy(
    ctx: &Ctx,
    node: &Node,
    primary: &Node,
    src: &CloneSource<'_>,
    staging: &Path,
    out: &Output,
    bar: &Option<ProgressBar>,
) -> Result<()> {
    let bin = ctx.bin()?;
    let method = ctx
        .cfg
        .replication
        .clone_method
        .resolve(bin.major, bin.program_major("pg_basebackup"))
        .map_err(Error::BinariesNotFound)?;
    out.info(format!(
        "{}: cloning from {} ({}:{}) with {}",
        node.name,
        primary.name,
        primary.host,
        primary.port,
        method.label()
    ));
    let deadline = tokio::time::Instant::now() + ctx.cfg.replication.clone_timeout;
    let mut backoff = Duration::from_millis(500);
    let mut last_decile = 0;
    loop {
        let progress = |p: basebackup::Progress| {
            let pct = (p.done_kb * 100).checked_div(p.total_kb).unwrap_or(0);
            match bar {
                Some(b) => {
                    b.set_length(p.total_kb);
                    b.set_position(p.done_kb);
                }
                None if pct / 25 > last_decile => {
                    last_decile = pct / 25;
                    out.info(format!("{}: clone {pct}% ({} of {} MB)", node.name, p.done_kb / 1024, p.total_kb / 1024));
                }
                None => {}
            }
        };
        match basebackup::clone(method, bin, &ctx.runas, src, staging, progress).await {
            Ok(()) => return Ok(()),
            Err(CloneFailure::Unreachable(why)) => {
                if tokio::time::Instant::now() + backoff > deadline {
                    return Err(Error::PrimaryUnreachable(format!(
                        "node {}: could not reach the primary {} at {}:{} for {}s: {}. Check that it is running (`pgrepl status`) and reachable from this host, then run `pgrepl up {}` again",
                        node.name,
                        primary.name,
                        primary.host,
                        primary.port,
                        ctx.cfg.replication.clone_timeout.as_secs(),
                        last_line(&why),
                        node.name
                    )));
                }
                out.info(format!(
                    "{}: primary not reachable yet ({}); retrying in {:.1}s",
                    node.name,
                    last_line(&why),
                    backoff.as_secs_f32()
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                // pg_basebackup may have written into the dir before failing.
                std::fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))?;
                crate::pg::fsutil::create_dir(staging, 0o700)?;
                ctx.runas.chown(staging)?;
            }
            Err(CloneFailure::Auth(why)) => {
                let _ = std::fs::remove_dir_all(staging);
                return Err(Error::Authentication(format!(
                    "node {}: the primary {} rejected the replication login as `{}`: {}. Check that [replication] password_file holds the password the cluster was bootstrapped with (pgrepl sets it on the primary at every `up`)",
                    node.name,
                    primary.name,
                    ctx.cfg.replication.user,
                    last_line(&why)
                )));
            }
            Err(CloneFailure::Other(e)) => return Err(e),
        }
    }
}

/// Kill what is left of a clone into `staging`: pg_basebackup's WAL-stream
/// child can outlive a killed pgrepl (the death signal reaches only its
/// parent). Both name the staging dir in their argv, so they are found by it.
async fn stop_writers(staging: &std::path::Path) {
    let needle = staging.to_string_lossy().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in procs.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).into_owned();
        if comm.trim() == "pg_basebackup" && cmd.split('\0').any(|a| a == needle) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            crate::pg::process::wait_pid_gone(pid, Duration::from_secs(5)).await;
        }
    }
}

/// The most telling line of a libpq error: the FATAL/auth line if any.
fn last_line(s: &str) -> &str {
    if let Some(l) = s.lines().find(|l| l.contains("authentication failed") || l.contains("pg_hba.conf")) {
        return l.trim();
    }
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// A progress bar for a clone on a TTY.
pub(crate) fn progress_bar(name: &str) -> ProgressBar {
    let b = ProgressBar::new(0);
    let style = ProgressStyle::with_template("[pgrepl] {prefix:<8} clone {bar:30} {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b.set_prefix(name.to_string());
    b
}

/// How this cluster's standbys log in to `primary` for replication: the
/// replication role and password, `[tls]`, and the name the primary shows.
pub(crate) fn replication_target(ctx: &Ctx, primary: &Node, application_name: &str) -> crate::pg::wire::Target {
    crate::pg::wire::Target {
        host: primary.host.clone(),
        port: primary.port,
        user: ctx.cfg.replication.user.clone(),
        password: ctx.cfg.replication.password.clone(),
        application_name: application_name.to_string(),
        tls: ctx.cfg.tls.clone(),
        // The servers run this host's major; only from 12 can a connection
        // set its own wal_sender_timeout (before, it is left at 60 s).
        options: ctx.bin().is_ok_and(|b| b.major >= 12).then(|| crate::pg::conf::BASE_BACKUP_OPTIONS.to_string()),
    }
}
