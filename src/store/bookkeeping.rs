//! What this host keeps for itself, apart from the cluster's record: the
//! highest `max_wal_senders` it ever rendered (never lowered: a standby
//! refuses to start below what its primary's WAL recorded) and the
//! replication slots it created (the only ones it ever drops). With one
//! agent per host, each keeps its own; the cluster's record holds only the
//! facts every host shares.
//!
//! Kept in `pgrepl.local.json` beside the record. A data root from before
//! the split kept both in the record (`pgrepl.state.json`, same field
//! names): they are read from there until the local file exists, and
//! moved into it before the record is next written.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// This host's bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Bookkeeping {
    /// The highest `max_wal_senders` ever rendered.
    #[serde(default)]
    pub max_wal_senders_used: u32,
    /// Replication slots pgrepl created.
    #[serde(default)]
    pub slots_created: Vec<String>,
}

/// The local file beside the record at `state_file`.
pub(crate) fn path_beside(state_file: &Path) -> PathBuf {
    state_file.with_file_name("pgrepl.local.json")
}

impl Bookkeeping {
    /// This host's bookkeeping; before the local file exists, what an
    /// older record kept; empty for a new data root.
    pub(crate) fn load(state_file: &Path) -> Result<Bookkeeping> {
        let local = path_beside(state_file);
        for path in [&local, &state_file.to_path_buf()] {
            match std::fs::read_to_string(path) {
                // Unknown fields (the record's own) are skipped.
                Ok(t) => {
                    return serde_json::from_str(&t).map_err(|e| {
                        Error::Other(format!("{} is corrupt ({e}); restore it or remove it", path.display()))
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(Bookkeeping::default())
    }

    /// Read, change and save under a lock.
    pub(crate) fn update<T>(state_file: &Path, f: impl FnOnce(&mut Bookkeeping) -> T) -> Result<T> {
        let local = path_beside(state_file);
        let _lock = crate::store::lock::exclusive(&local.with_extension("lock"), true)?;
        let mut b = Bookkeeping::load(state_file)?;
        let out = f(&mut b);
        b.save(&local)?;
        Ok(out)
    }

    /// Before the record is rewritten without them: an older record's
    /// bookkeeping moves to the local file (once; a no-op after).
    pub(crate) fn migrate(state_file: &Path) -> Result<()> {
        if path_beside(state_file).exists() || !state_file.exists() {
            return Ok(());
        }
        Bookkeeping::update(state_file, |_| ())
    }

    fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        crate::pg::fsutil::write_atomic(path, text.as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_records_bookkeeping_moves_to_the_local_file_before_the_record_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("pgrepl.state.json");
        std::fs::write(
            &state,
            r#"{"cluster":"c","primary":"pg-1","max_wal_senders_used":12,"slots_created":["pg_2"]}"#,
        )
        .unwrap();
        let old = Bookkeeping { max_wal_senders_used: 12, slots_created: vec!["pg_2".into()] };
        assert_eq!(Bookkeeping::load(&state).unwrap(), old, "read from the record until the split");
        Bookkeeping::migrate(&state).unwrap();
        std::fs::write(&state, r#"{"cluster":"c","primary":"pg-1"}"#).unwrap();
        assert_eq!(Bookkeeping::load(&state).unwrap(), old, "kept in the local file");
        Bookkeeping::update(&state, |b| b.max_wal_senders_used = 14).unwrap();
        assert_eq!(Bookkeeping::load(&state).unwrap().max_wal_senders_used, 14);
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(Bookkeeping::load(&fresh.path().join("pgrepl.state.json")).unwrap(), Bookkeeping::default());
    }
}
