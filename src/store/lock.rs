//! The supervisor lock: one supervisor per data root. The running
//! supervisor holds an exclusive flock on `pgrepl.pid` (which also holds its
//! pid), so a crashed supervisor never leaves a stale lock behind.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{Flock, FlockArg};

use crate::config::layout::Layout;
use crate::error::{Error, Result};

/// Held for as long as the supervisor runs.
pub(crate) struct SupervisorLock {
    _lock: Flock<std::fs::File>,
}

/// Take the lock and write our pid, or say who holds it.
pub(crate) fn acquire(layout: &Layout) -> Result<SupervisorLock> {
    let path = layout.lock_file();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0).map_err(|e| Error::io(&path, e))?;
            lock.rewind().map_err(|e| Error::io(&path, e))?;
            write!(lock, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
            lock.sync_all().map_err(|e| Error::io(&path, e))?;
            Ok(SupervisorLock { _lock: lock })
        }
        Err((_, _)) => Err(Error::Usage(format!(
            "another pgrepl supervisor (pid {}) already runs this data root; use `pgrepl status`, or `pgrepl down` to stop it",
            holder(layout).map_or("?".to_string(), |p| p.to_string())
        ))),
    }
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
