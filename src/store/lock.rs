//! File locks, one mechanism for the three pgrepl takes: the supervisor
//! lock (one supervisor per data root; `pgrepl.pid` also holds its pid and nodes),
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

/// Who runs a data root: the supervisor's pid and the nodes it manages.
/// Both live in the lock file and are written in one go with the lock
/// held, so a reader never sees a supervisor without its node list (a
/// racing `up` once read an empty list from a second file written later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: i32,
    pub nodes: Vec<String>,
}

/// The lock file's last line: a reader that does not see it is looking at
/// a write in progress.
const END: &str = "end";

impl Holder {
    fn render(&self) -> String {
        let mut text = format!("{}\n", self.pid);
        for n in &self.nodes {
            text.push_str(n);
            text.push('\n');
        }
        text + END + "\n"
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut lines: Vec<&str> = text.lines().collect();
        if lines.pop()? != END || !text.ends_with('\n') {
            return None;
        }
        let pid = lines.first()?.trim().parse().ok()?;
        Some(Holder { pid, nodes: lines[1..].iter().map(|s| s.to_string()).collect() })
    }
}

/// Take the supervisor lock and record who we are and which nodes we run,
/// or say who holds it.
pub(crate) fn acquire(layout: &Layout, nodes: &[&str]) -> Result<SupervisorLock> {
    let path = layout.lock_file();
    let Some(mut lock) = exclusive(&path, false)? else {
        return Err(Error::Usage(format!(
            "another pgrepl supervisor (pid {}) already runs this data root; use `pgrepl status`, or `pgrepl down` to stop it",
            holder(layout).map_or("?".to_string(), |h| h.pid.to_string())
        )));
    };
    let me = Holder { pid: std::process::id() as i32, nodes: nodes.iter().map(|s| s.to_string()).collect() };
    let f = &mut *lock.0;
    f.set_len(0).map_err(|e| Error::io(&path, e))?;
    f.rewind().map_err(|e| Error::io(&path, e))?;
    f.write_all(me.render().as_bytes()).map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    Ok(lock)
}

/// The running supervisor, if one holds the lock. A supervisor that has
/// just taken the lock may not have written the file yet: it is read again
/// for a moment rather than reporting "no supervisor".
pub(crate) fn holder(layout: &Layout) -> Option<Holder> {
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
        if let Some(h) = Holder::parse(&text) {
            return Some(h);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_names_its_nodes_as_soon_as_it_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert_eq!(holder(&layout), None);
        let lock = acquire(&layout, &["pg-1", "pg-2"]).unwrap();
        let want = Holder { pid: std::process::id() as i32, nodes: vec!["pg-1".into(), "pg-2".into()] };
        assert_eq!(holder(&layout), Some(want));
        drop(lock);
        assert_eq!(holder(&layout), None);
    }

    #[test]
    fn a_file_being_written_is_not_a_holder() {
        let h = Holder { pid: 42, nodes: vec!["pg-1".into()] };
        let full = h.render();
        assert_eq!(Holder::parse(&full), Some(h));
        for cut in 0..full.len() {
            assert_eq!(Holder::parse(&full[..cut]), None, "prefix {cut}: {:?}", &full[..cut]);
        }
        assert_eq!(Holder::parse("42\n"), None, "an old pid-only file is a write in progress");
    }
}
