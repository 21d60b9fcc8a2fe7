//! Where pgrepl keeps its own files under `data_root`, next to the nodes'
//! data directories. One place, so no other module builds these paths.

use std::path::{Path, PathBuf};

/// Paths under the data root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Layout { root: root.to_path_buf() }
    }
    /// Unix sockets of every local node (`.s.PGSQL.<port>`).
    pub(crate) fn socket_dir(&self) -> PathBuf {
        self.root.join("sockets")
    }
    /// libpq passfile with the replication password, mode 0600.
    pub(crate) fn passfile(&self) -> PathBuf {
        self.root.join("pgpass")
    }
    /// A pgpass file for the `[[database]]` owners, for the URI `up` prints
    /// (mode 0600, owned by whoever runs pgrepl).
    pub(crate) fn client_passfile(&self) -> PathBuf {
        self.root.join("client.pgpass")
    }
    /// The client's copy of the `[tls]` CA (libpq's sslrootcert).
    pub(crate) fn root_cert(&self) -> PathBuf {
        self.root.join("root.crt")
    }
    /// Asks the supervisor to exit leaving PostgreSQL running (`down --leave-running`).
    pub(crate) fn leave_running_marker(&self) -> PathBuf {
        self.run_dir().join("leave-running")
    }
    /// Runtime state (system identifier, bootstrap progress, current primary).
    pub(crate) fn state_file(&self) -> PathBuf {
        self.root.join("pgrepl.state.json")
    }
    /// Held (flock) by the running supervisor; holds its pid.
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join("pgrepl.pid")
    }
    /// The detached supervisor's log.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.root.join("pgrepl.log")
    }
    /// Control files (stop requests, the ready marker).
    pub(crate) fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// Written by the supervisor once `up` finished; holds its pid.
    pub(crate) fn ready_file(&self) -> PathBuf {
        self.run_dir().join("ready")
    }
    /// The config text the running supervisor started with (mode 0600: it
    /// may hold a literal password), to tell which of pgrepl's own settings
    /// a later `reload` cannot apply.
    pub(crate) fn supervisor_config(&self) -> PathBuf {
        self.run_dir().join("supervisor.toml")
    }
    /// Held (flock) while a move (switchover, failover, rejoin, reclone) runs.
    pub(crate) fn move_lock(&self) -> PathBuf {
        self.run_dir().join("move.lock")
    }
    /// The durability task's latest plan (JSON), for `status`.
    pub(crate) fn durability_file(&self) -> PathBuf {
        self.run_dir().join("durability")
    }
    /// The HA task's latest decision, for `status`.
    pub(crate) fn ha_file(&self) -> PathBuf {
        self.run_dir().join("ha")
    }
    /// Written after a move or restart pgrepl made: until when (unix
    /// seconds) and why `check` reports what it breaks as settling.
    pub(crate) fn settling_file(&self) -> PathBuf {
        self.run_dir().join("settling")
    }
    /// Present while the user wants `node` stopped (`pgrepl down NODE`).
    pub(crate) fn stop_marker(&self, node: &str) -> PathBuf {
        self.run_dir().join(format!("{node}.stopped"))
    }
}
