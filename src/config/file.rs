//! The on-disk shape of `pgrepl.toml`. Unknown keys are rejected, and the
//! fields whose problems we report by position are `Spanned`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    /// `[cluster]`: name and where data lives.
    pub cluster: Cluster,
    /// `[replication]`: the replication role and WAL retention.
    #[serde(default)]
    pub replication: Replication,
    /// `[[node]]`: one per PostgreSQL server.
    #[serde(default)]
    pub node: Vec<Node>,
    /// `[postgresql]`: settings applied to every node; these win over ours.
    #[serde(default)]
    pub postgresql: BTreeMap<String, Spanned<toml::Value>>,
    /// `[[database]]`: databases created at bootstrap.
    #[serde(default)]
    pub database: Vec<Database>,
    /// `[[role]]`: roles pgrepl creates and keeps as declared.
    #[serde(default)]
    pub role: Vec<RoleDecl>,
    /// `[[hba]]`: extra pg_hba rules, after pgrepl's own.
    #[serde(default)]
    pub hba: Vec<Spanned<Hba>>,
    /// `[supervisor]`: start/stop/restart timings.
    #[serde(default)]
    pub supervisor: Supervisor,
    /// `[monitor]`: snapshot interval and health thresholds.
    #[serde(default)]
    pub monitor: Monitor,
    /// `[api]`: the per-node HTTP health API.
    #[serde(default)]
    pub api: Api,
    /// `[failover]`: automatic failover on one machine.
    #[serde(default)]
    pub failover: Failover,
    /// `[archive]`: a WAL archive replicas can catch up from.
    #[serde(default)]
    pub archive: Archive,
    /// `[tls]`: encrypt every TCP connection to the nodes. Absent: no TLS.
    pub tls: Option<Spanned<Tls>>,
    /// `[hooks]`: a command run after each cluster event.
    pub hooks: Option<Hooks>,
    /// `[log]`: how pgrepl writes its own lines.
    #[serde(default)]
    pub log: Log,
    /// `[etcd]`: run across hosts, coordinated through etcd. Absent: one
    /// machine, the in-process store.
    pub etcd: Option<Spanned<Etcd>>,
}

/// `[etcd]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Etcd {
    /// Client URLs of the etcd members, `http://HOST:PORT`.
    pub endpoints: Spanned<Vec<Spanned<String>>>,
    /// Keys live under `<prefix>/<cluster name>/`. Default `/pgrepl`.
    pub prefix: Option<Spanned<String>>,
    /// The leader lease's time to live. Default `3s`.
    pub ttl: Option<Spanned<String>>,
    /// With `https://` endpoints: the CA that signed etcd's certificates
    /// (default: the system's trusted CAs).
    pub ca_file: Option<Spanned<String>>,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    /// etcd's own authentication (`etcdctl auth enable`): a user, and a
    /// file whose first line is its password.
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Log {
    /// `text` (a timestamp and a level on each line) or `json` (one object
    /// per line). Default `text`; `--log-format` overrides it.
    pub format: Option<Spanned<String>>,
}

/// `[hooks]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Hooks {
    /// Run as `COMMAND EVENT NODE` (relative to the config file).
    pub on_event: Spanned<String>,
    /// How long it may run. Default `30s`.
    pub timeout: Option<Spanned<String>>,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tls {
    /// PEM certificate every node presents (relative to the config file).
    pub cert_file: Spanned<String>,
    /// Its PEM private key.
    pub key_file: Spanned<String>,
    /// PEM CA certificate(s) clients verify the nodes' certificate against.
    pub ca_file: Option<Spanned<String>>,
    /// `require`, `verify-ca` or `verify-full` (default: verify-full with a
    /// ca_file, else require).
    pub sslmode: Option<Spanned<String>>,
}

/// `[archive]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Archive {
    /// Archive directory (relative to the config file). Unset: no archive.
    pub dir: Option<Spanned<String>>,
}

/// `[failover]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Failover {
    /// `automatic` (default) or `manual`.
    pub mode: Option<Spanned<String>>,
    /// How long a dead primary may take to accept writes again after a
    /// restart in place before a replica is promoted. Default `10s`.
    pub primary_start_timeout: Option<Spanned<String>>,
    /// Rejoin a fenced former primary by itself (pg_rewind). Default true.
    pub auto_rejoin: Option<bool>,
    /// How often a failed automatic rejoin is retried. Default `5s`.
    pub rejoin_interval: Option<Spanned<String>>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Cluster {
    /// Cluster name; also PostgreSQL's `cluster_name` prefix.
    pub name: Spanned<String>,
    /// Data root, relative to the config file. Default `data`.
    pub data_root: Option<Spanned<String>>,
    /// Directory holding `postgres`, `initdb`, ...; found automatically if unset.
    pub postgres_bin: Option<Spanned<String>>,
    /// OS user that runs PostgreSQL when pgrepl runs as root. Default `postgres`.
    pub os_user: Option<Spanned<String>>,
}

/// `[replication]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Replication {
    /// Replication role name. Default `replicator`.
    pub user: Option<Spanned<String>>,
    /// File holding the replication password (first line).
    pub password_file: Option<Spanned<String>>,
    /// Environment variable holding the replication password.
    pub password_env: Option<Spanned<String>>,
    /// Literal password: works, but warns.
    pub password: Option<Spanned<String>>,
    /// One physical slot per replica. Default true.
    pub slots: Option<bool>,
    /// `wal_keep_size` on every node. Default `160MB`.
    pub wal_keep_size: Option<Spanned<String>>,
    /// Override the `3 + 2 × replicas` rule.
    pub max_wal_senders: Option<Spanned<i64>>,
    /// How long a clone retries an unreachable primary. Default `120s`.
    pub clone_timeout: Option<Spanned<String>>,
    /// Re-clone a standby whose slot was lost, by itself. Default false.
    pub auto_reclone: Option<bool>,
    /// `async` (default), `sync` or `sync-strict`.
    pub durability: Option<Spanned<String>>,
    /// How many standbys must confirm each commit in the sync modes. Default 1.
    pub sync_count: Option<Spanned<i64>>,
    /// Most WAL a replication slot may hold back (PostgreSQL 13+). Default `8GB`.
    pub max_slot_wal_keep_size: Option<Spanned<String>>,
    /// `auto` (default), `pg_basebackup` or `builtin`.
    pub clone_method: Option<Spanned<String>>,
}

/// `[[node]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Node {
    /// Unique node name; also `application_name` and the slot name.
    pub name: Spanned<String>,
    /// Address the node listens on and is reached at. Default `127.0.0.1`.
    pub host: Option<Spanned<String>>,
    /// TCP port.
    pub port: Spanned<i64>,
    /// `primary` or `replica`: the role at bootstrap.
    pub role: Option<Spanned<String>>,
    /// Data directory; default `<data_root>/<name>`.
    pub data_dir: Option<Spanned<String>>,
    /// Port of this node's HTTP health API; default `port + 10000`.
    pub api_port: Option<Spanned<i64>>,
    /// Preference as a failover/switchover target; 0 = never. Default 1.
    pub failover_priority: Option<Spanned<i64>>,
}

/// `[[database]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Database {
    /// Database name.
    pub name: Spanned<String>,
    /// Owner role, created as a login role if missing. Default: the superuser.
    pub owner: Option<Spanned<String>>,
    /// File with the owner's password, for TCP logins.
    pub owner_password_file: Option<Spanned<String>>,
    /// SQL files applied once, in order, as the owner.
    #[serde(default)]
    pub schema: Vec<Spanned<String>>,
}

/// `[[role]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleDecl {
    /// Role name.
    pub name: Spanned<String>,
    /// File with its password (first line), for TCP logins. None: no password.
    pub password_file: Option<Spanned<String>>,
    /// May log in. Default true.
    pub login: Option<bool>,
    /// Roles it is a member of (say `pg_monitor`); memberships not listed are revoked.
    #[serde(default)]
    pub in_roles: Vec<Spanned<String>>,
}

/// `[[hba]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Hba {
    /// `local`, `host`, `hostssl` or `hostnossl`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Database column.
    pub database: String,
    /// User column.
    pub user: String,
    /// Address column (not for `local`).
    pub address: Option<String>,
    /// Auth method.
    pub method: String,
}

/// `[supervisor]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Supervisor {
    /// How long a node may take to accept connections. Default `60s`.
    pub start_timeout: Option<Spanned<String>>,
    /// How long a fast stop may take before an immediate stop. Default `60s`.
    pub stop_timeout: Option<Spanned<String>>,
    /// Ceiling of the restart backoff. Default `30s`.
    pub restart_backoff_max: Option<Spanned<String>>,
}

/// `[monitor]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Monitor {
    /// How often the supervisor's monitor task takes a snapshot. Default `1s`.
    pub interval: Option<Spanned<String>>,
    /// Replay lag (time) that makes a replica WARNING. Default `60s`.
    pub warn_lag: Option<Spanned<String>>,
    /// Replay lag (time) that makes a replica CRITICAL. Default `300s`.
    pub crit_lag: Option<Spanned<String>>,
    /// Recovery conflicts on a standby that make it WARNING. Default 100.
    pub warn_conflicts: Option<Spanned<i64>>,
    /// WAL a slot may hold back before it is CRITICAL. Default `1GB`.
    pub crit_slot_retained: Option<Spanned<String>>,
    /// A `[[role]]` that `status`, `check` and `monitor` log in as over TCP (give
    /// it `in_roles = ["pg_monitor"]`), so they need no superuser and no
    /// replication secret.
    pub role: Option<Spanned<String>>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Api {
    /// Address the per-node listeners bind to. Default `127.0.0.1`.
    pub listen: Option<Spanned<String>>,
    /// Serve the API at all. Default true.
    pub enabled: Option<bool>,
    /// A file (mode 0600) whose first line is the bearer token the write
    /// endpoints (POST) ask for. Absent: the write endpoints are off.
    pub token_file: Option<Spanned<String>>,
    /// Serve HTTPS with the `[tls]` certificate. Default false.
    pub tls: Option<Spanned<bool>>,
}
