//! The seam between pgrepl and where the cluster's record lives. Every
//! read and change of the record ([`State`]) goes through a
//! [`ClusterStore`]: today the state file under the data root, changed
//! under a file lock ([`FileStore`]); with `[etcd]`, a key changed by
//! compare-and-set ([`crate::store::etcd::EtcdRecord`]). Callers never name the file.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::store::state::State;

/// Where the cluster's record is kept.
pub(crate) trait ClusterStore: Send + Sync + std::fmt::Debug {
    /// The record as it is now (empty before bootstrap).
    fn load(&self) -> Result<State>;
    /// Read, change and write back the record as one step: two writers
    /// (a move command, the agent's tasks) never undo each other's change.
    fn change(&self, f: &mut dyn FnMut(&mut State)) -> Result<()>;
    /// [`ClusterStore::change`], made only while `leader` holds the leader
    /// lease. Across hosts the write is one transaction that also compares
    /// the leader key, so a leader that lost its lease (and does not know
    /// it yet) cannot write what only the leader may. On one machine the
    /// supervisor is the only writer, and this is `change`.
    fn change_as_leader(&self, leader: &str, f: &mut dyn FnMut(&mut State)) -> Result<()> {
        let _ = leader;
        self.change(f)
    }
}

impl dyn ClusterStore + '_ {
    /// [`ClusterStore::change`], returning what `f` returns. `f` may run
    /// more than once: a store that lost a race reads again and reapplies it.
    pub(crate) fn update<T>(&self, mut f: impl FnMut(&mut State) -> T) -> Result<T> {
        let mut out = None;
        self.change(&mut |st| out = Some(f(st)))?;
        out.ok_or_else(|| Error::Other("the cluster's record was not changed".into()))
    }

    /// [`ClusterStore::change_as_leader`], returning what `f` returns.
    pub(crate) fn update_as_leader<T>(&self, leader: &str, mut f: impl FnMut(&mut State) -> T) -> Result<T> {
        let mut out = None;
        self.change_as_leader(leader, &mut |st| out = Some(f(st)))?;
        out.ok_or_else(|| Error::Other("the cluster's record was not changed".into()))
    }
}

/// The record in a JSON file, written atomically, changed under a lock.
#[derive(Debug)]
pub(crate) struct FileStore {
    pub(crate) path: PathBuf,
}

impl ClusterStore for FileStore {
    fn load(&self) -> Result<State> {
        State::load(&self.path)
    }

    fn change(&self, f: &mut dyn FnMut(&mut State)) -> Result<()> {
        State::update(&self.path, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_read_back_and_returns_what_the_closure_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore { path: dir.path().join("state.json") };
        let store: &dyn ClusterStore = &store;
        assert_eq!(store.load().unwrap(), State::default(), "no file yet: an empty record");
        let before = store.update(|st| st.primary.replace("pg-2".into())).unwrap();
        assert_eq!(before, None);
        assert_eq!(store.load().unwrap().primary.as_deref(), Some("pg-2"));
    }
}
