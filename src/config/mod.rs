//! The config file: where it is found, its on-disk shape (`file`), and the
//! validated, resolved form the rest of pgrepl uses ([`Config`]).
//! Validation lives in `validate`; this module owns no checks of its own.

mod file;
pub(crate) mod layout;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::units::ByteSize;
use crate::error::{Error, Result};

pub(crate) use validate::{parse, slot_name};

/// Where `pgrepl` looks for its config when `-c` is not given.
pub(crate) const ENV_VAR: &str = "PGREPL_CONFIG";
/// The default config file name, in the current directory.
pub(crate) const DEFAULT_FILE: &str = "pgrepl.toml";

/// Resolve the config path: `-c/--config`, then `$PGREPL_CONFIG`, then
/// `./pgrepl.toml`.
pub(crate) fn locate(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(ENV_VAR) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_FILE),
    }
}

/// [`load`] for the observing commands (`status`, `check`, `monitor`): a
/// secret file this user may not read (the replication password, say) is no
/// problem for them; they log in as `[monitor] role` or over the socket.
pub(crate) fn load_observing(path: &Path) -> Result<Config> {
    validate::parse_with(path, &read(path)?, true)
}

/// Read and validate the config at `path`. Every problem is reported at once.
pub fn load(path: &Path) -> Result<Config> {
    parse(path, &read(path)?)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Config {
        problems: vec![format!(
            "{}: cannot read config: {e}. Create one with `pgrepl init`, or pass -c FILE or set {ENV_VAR}",
            path.display()
        )],
    })
}

/// A password, kept out of `Debug` output so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a password.
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The password itself. Call only where it is written to a 0600 file or
    /// turned into a SCRAM verifier.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The role a node is bootstrapped with. Which node is primary *now* is
/// runtime state, not config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file, as given.
    pub path: PathBuf,
    /// `[cluster] name`.
    pub cluster_name: String,
    /// Absolute data root.
    pub data_root: PathBuf,
    /// Explicit bindir, if the user set one.
    pub postgres_bin: Option<PathBuf>,
    /// OS user that runs PostgreSQL when pgrepl runs as root.
    pub os_user: String,
    /// `[replication]`.
    pub replication: Replication,
    /// Nodes in config order; exactly one has `bootstrap_role == Primary`.
    pub nodes: Vec<Node>,
    /// User `[postgresql]` settings, already rendered as GUC literals.
    pub postgresql: BTreeMap<String, String>,
    /// `[[database]]` entries.
    pub databases: Vec<Database>,
    /// `[[role]]` entries.
    pub roles: Vec<RoleSpec>,
    /// Extra `[[hba]]` rules, appended after pgrepl's own.
    pub hba: Vec<HbaRule>,
    /// `[supervisor]` timings.
    pub supervisor: Supervisor,
    /// `[monitor]` interval and thresholds.
    pub monitor: Monitor,
    /// `[api]` settings.
    pub api: Api,
    /// `[failover]` settings.
    pub failover: Failover,
    /// `[archive] dir`, absolute; None without an archive.
    pub archive: Option<PathBuf>,
    /// `[tls]`, with the files already read; None: plain TCP.
    pub tls: Option<Tls>,
    /// `[hooks]`; None: no hook.
    pub hooks: Option<Hooks>,
    /// Non-fatal remarks (for example a literal password in the file).
    pub warnings: Vec<String>,
    /// `[log] format = "json"`: one JSON object per line.
    pub log_json: bool,
    /// `[etcd]`; None: one machine, the in-process store.
    pub etcd: Option<Etcd>,
}

/// `[replication]`, resolved.
#[derive(Debug, Clone)]
pub struct Replication {
    pub user: String,
    pub password: Secret,
    pub slots: bool,
    pub wal_keep_size: ByteSize,
    pub max_wal_senders: Option<u32>,
    /// How long a clone keeps retrying an unreachable primary.
    pub clone_timeout: Duration,
    /// Bound on the WAL a slot may retain (PostgreSQL 13+).
    pub max_slot_wal_keep_size: ByteSize,
    /// `async`, `sync` or `sync-strict`.
    pub durability: crate::domain::modes::Durability,
    /// Re-clone a standby whose slot was lost, by itself.
    pub auto_reclone: bool,
    /// Standbys that must confirm each commit in the sync modes.
    pub sync_count: usize,
    /// How replicas are copied from the primary.
    pub clone_method: crate::domain::modes::CloneMethod,
}

/// `[hooks]`, resolved.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// Absolute path of the command.
    pub on_event: PathBuf,
    pub timeout: Duration,
}

/// One `[[node]]`, resolved.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub bootstrap_role: Role,
    pub data_dir: PathBuf,
    /// Line of the node's `name` key, for messages that point at the config.
    pub line: usize,
    /// Port of the node's HTTP health API.
    pub api_port: u16,
    /// Preference as a failover/switchover target among equally advanced
    /// replicas; 0 = never promoted (a reporting or DR replica).
    pub failover_priority: u32,
}

/// One `[[database]]`, resolved.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub owner: String,
    pub owner_password: Option<Secret>,
    /// Absolute paths, applied in order, once.
    pub schema: Vec<PathBuf>,
}

/// One `[[role]]`, resolved.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    pub name: String,
    pub password: Option<Secret>,
    pub login: bool,
    /// (role, `file:line:col` in the config) for each membership.
    pub in_roles: Vec<(String, String)>,
    /// Where it is declared, for messages.
    pub at: String,
}

/// One `[[hba]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    pub kind: String,
    pub database: String,
    pub user: String,
    pub address: Option<String>,
    pub method: String,
}

/// `[supervisor]`: timings for starting, stopping and restarting postgres.
#[derive(Debug, Clone)]
pub struct Supervisor {
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub restart_backoff_max: Duration,
}

/// `[monitor]`: how often the supervisor snapshots the cluster, and the
/// thresholds of `check`, `monitor` and the health verdicts.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub interval: Duration,
    pub warn_lag: Duration,
    pub crit_lag: Duration,
    pub warn_conflicts: u64,
    pub crit_slot_retained: ByteSize,
    /// The `[[role]]` observing commands log in as, if set.
    pub role: Option<String>,
}

/// `[failover]`: automatic failover on one machine.
#[derive(Debug, Clone)]
pub struct Failover {
    pub mode: crate::domain::modes::FailoverMode,
    pub primary_start_timeout: Duration,
    pub auto_rejoin: bool,
    pub rejoin_interval: Duration,
}

/// `[etcd]`: the store that coordinates agents on several hosts.
#[derive(Debug, Clone)]
pub struct Etcd {
    /// Client URLs, `http://HOST:PORT` or `https://HOST:PORT` (all alike),
    /// tried in order.
    pub endpoints: Vec<String>,
    /// Keys live under `<prefix>/<cluster name>/`.
    pub prefix: String,
    /// The leader lease's time to live.
    pub ttl: Duration,
    /// With `https://` endpoints: the CA file (None: the system's), and a
    /// client certificate and key, if etcd asks for one.
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// etcd's own authentication: a user and its password.
    pub auth: Option<(String, Secret)>,
}

/// `[api]`: where the per-node HTTP listeners bind, and who may write.
#[derive(Debug, Clone)]
pub struct Api {
    pub listen: String,
    pub enabled: bool,
    pub write: WriteAccess,
    /// HTTPS with the `[tls]` certificate (validation checks `[tls]` is set).
    pub tls: bool,
}

/// Whether the API's write endpoints (POST) are on, and with which token.
#[derive(Debug, Clone)]
pub enum WriteAccess {
    /// No `token_file`: writes answer 403, naming the setting.
    Off,
    /// A `token_file` that cannot be used safely: writes answer 403 with
    /// this reason (already warned about at config load).
    Refused(String),
    /// Writes need `Authorization: Bearer <token>`.
    Token(Secret),
}

impl Config {
    /// The node with this name, or a usage error listing the names there are.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            Error::Usage(format!(
                "no node named `{name}` in {}; the nodes are: {}",
                self.path.display(),
                names.join(", ")
            ))
        })
    }

    /// The node bootstrapped as primary.
    pub fn bootstrap_primary(&self) -> &Node {
        // validate guarantees exactly one
        self.nodes.iter().find(|n| n.bootstrap_role == Role::Primary).unwrap_or(&self.nodes[0])
    }

    /// `file:line` of a node, for messages.
    pub fn node_location(&self, node: &Node) -> String {
        format!("{}:{}", self.path.display(), node.line)
    }
}

/// The physical slot a replica streams through, or `None` with slots off.
pub(crate) fn slot_name_for(cfg: &Config, node: &Node) -> Option<String> {
    cfg.replication.slots.then(|| validate::slot_name(&node.name))
}

/// `[tls]`, with the PEM files read at config load.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: Secret,
    pub ca_pem: Option<String>,
    pub sslmode: crate::domain::modes::SslMode,
}
