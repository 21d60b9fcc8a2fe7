//! `up --detach`: start the supervisor as a background process whose output
//! goes to `<data_root>/pgrepl.log`, show that log until the cluster is up,
//! then return. If the supervisor fails, its exit code becomes ours.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::Duration;

use crate::cmd::up::UpOptions;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::store::ctx::Ctx;

/// Spawn the background supervisor and follow its log until it is ready.
pub(crate) async fn spawn(ctx: &Ctx, opts: &UpOptions, out: &Output) -> Result<()> {
    crate::pg::fsutil::create_dir(&ctx.layout.root, 0o700)?;
    ctx.runas.chown(&ctx.layout.root)?;
    let log_path = ctx.layout.log_file();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let offset = log.seek(SeekFrom::End(0)).map_err(|e| Error::io(&log_path, e))?;
    let _ = std::fs::remove_file(ctx.layout.ready_file());
    let exe = std::env::current_exe().map_err(|e| Error::Other(format!("cannot find pgrepl's own executable: {e}")))?;
    let config = std::path::absolute(&ctx.cfg.path).map_err(|e| Error::io(&ctx.cfg.path, e))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--config").arg(&config).arg("up").arg("--supervise-child");
    if opts.quiet_postgres {
        cmd.arg("--quiet-postgres");
    }
    if let Some(f) = &opts.log_format {
        cmd.arg("--log-format").arg(f);
    }
    for n in &opts.reclone {
        cmd.arg("--reclone").arg(n);
    }
    cmd.args(&opts.nodes);
    let err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    writeln!(log, "----- pgrepl up --detach (pid {}) -----", std::process::id())
        .map_err(|e| Error::io(&log_path, e))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0).kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|e| Error::Other(format!("cannot start the background supervisor: {e}")))?;
    let pid = child.id().unwrap_or(0);
    let mut reader = std::fs::File::open(&log_path).map_err(|e| Error::io(&log_path, e))?;
    reader.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&log_path, e))?;
    loop {
        echo(&mut reader);
        if let Ok(Some(status)) = child.try_wait() {
            echo(&mut reader);
            return Err(Error::Exit(status.code().unwrap_or(1)));
        }
        // The supervisor's pid; then, if part of the cluster could not be
        // brought up, the exit code and the message.
        let ready = std::fs::read_to_string(ctx.layout.ready_file()).unwrap_or_default();
        let mut lines = ready.splitn(3, '\n');
        if lines.next().and_then(|l| l.trim().parse::<u32>().ok()) == Some(pid) {
            echo(&mut reader);
            out.info(format!(
                "supervisor running in the background (pid {pid}); log: {}; stop with `pgrepl down`",
                log_path.display()
            ));
            if let (Some(code), Some(msg)) = (lines.next().and_then(|c| c.trim().parse::<i32>().ok()), lines.next()) {
                eprintln!("pgrepl: error: {msg}");
                return Err(Error::Exit(code));
            }
            return Ok(());
        }
        // Reading one small file: a fine poll costs nothing and is part of
        // how long `up --detach` takes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copy new log text to our output: the supervisor's own error line goes
/// to stderr, where it would have gone in the foreground.
fn echo(reader: &mut std::fs::File) {
    let mut chunk = String::new();
    let _ = reader.read_to_string(&mut chunk);
    for line in chunk.split_inclusive('\n') {
        if line.starts_with("pgrepl: error:") {
            eprint!("{line}");
        } else {
            print!("{line}");
        }
    }
    let _ = std::io::stdout().flush();
}
