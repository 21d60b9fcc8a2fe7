//! File locks, one mechanism for the three pgrepl takes: the supervisor
//! lock (one supervisor per data root; `pgrepl.pid` also holds its pid),
//! the move lock (one move at a time) and the record's lock (one writer at
//! a time). Each is an exclusive flock, which the kernel drops with the
//! process, so a crash never leaves a stale lock behind.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::config::layout::Layout;
use crate::error::{Error, Result};

/// An exclusive lock on a file, held until dropped.
pub(crate) struct FileLock(Flock<std::fs::File>);

/// Lock `path` (created 0644 if missing). With `wait`, block until it is
/// free; without, `None` when another process holds it.
pub(crate) fn exclusive(path: &Path, wait: bool) -> Result<Option<FileLock>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let how = if wait { FlockArg::LockExclusive } else { FlockArg::LockExclusiveNonblock };
    match Flock::lock(file, how) {
        Ok(l) => Ok(Some(FileLock(l))),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => Ok(None),
        Err((_, e)) => Err(Error::Other(format!("locking {}: {e}", path.display()))),
    }
}

/// Held for as long as the supervisor runs.
pub(crate) type SupervisorLock = FileLock;

/// Take the supervisor lock and write our pid, or say who holds it.
pub(crate) fn acquire(layout: &Layout) -> Result<SupervisorLock> {
    let path = layout.lock_file();
    let Some(mut lock) = exclusive(&path, false)? else {
        return Err(Error::Usage(format!(
            "another pgrepl supervisor (pid {}) already runs this data root; use `pgrepl status`, or `pgrepl down` to stop it",
            holder(layout).map_or("?".to_string(), |p| p.to_string())
        )));
    };
    let f = &mut *lock.0;
    f.set_len(0).map_err(|e| Error::io(&path, e))?;
    f.rewind().map_err(|e| Error::io(&path, e))?;
    write!(f, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    Ok(lock)
}

/// The pid of the running supervisor, if one holds the lock. A supervisor
/// that has just taken the lock may not have written its pid yet: the file
/// is read again for a moment rather than reporting "no supervisor".
pub(crate) fn holder(layout: &Layout) -> Option<i32> {
    let path = layout.lock_file();
    for _ in 0..50 {
        let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
        // Free lock: no supervisor (the shared lock is dropped at once).
        let mut file = match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_free) => return None,
            Err((file, _)) => file,
        };
        let mut text = String::new();
        file.read_to_string(&mut text).ok()?;
        if let Ok(pid) = text.trim().parse() {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}
