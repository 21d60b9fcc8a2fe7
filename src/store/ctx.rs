//! The context every command works in: the validated config, the
//! PostgreSQL installation, the OS identity PostgreSQL runs as, and the
//! data-root layout. Built once per command and passed explicitly.

use std::sync::{Arc, OnceLock};

use tokio_postgres::Client;

use crate::config::layout::Layout;
use crate::config::{Config, Node};
use crate::error::{Error, Result};
use crate::pg::bin::{self, PgBin};
use crate::pg::os_user::RunAs;
use crate::pg::sql;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::etcd::{EtcdRecord, Gateway};
use crate::store::record::{ClusterStore, FileStore};

/// The most a connection may take, socket connect and startup together.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Shared, read-only context.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub cfg: Config,
    /// Found on first use: observing commands never need the binaries, and
    /// finding them costs a `postgres --version`.
    bin: OnceLock<PgBin>,
    pub runas: RunAs,
    pub layout: Layout,
    /// The cluster's record: read and changed only through here.
    store: Arc<dyn ClusterStore>,
    /// With `[etcd]`: the members every store call goes to.
    etcd: Option<Arc<Gateway>>,
    /// This machine's addresses, read once.
    here: OnceLock<std::collections::HashSet<std::net::IpAddr>>,
    /// Across hosts: until when each local leader's lease is known to hold
    /// (its HA loop's deadline d, set at each renewal, cleared when it
    /// freezes or steps down). Other tasks read it before acting as the leader.
    leases: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Ctx {
    /// The OS identity and layout for `cfg`.
    pub(crate) fn new(cfg: Config) -> Result<Arc<Ctx>> {
        let runas = RunAs::resolve(&cfg.os_user)?;
        let layout = Layout::new(&cfg.data_root);
        // One machine keeps the record in a file; across hosts it lives in
        // etcd, where every agent and command sees the same one.
        let (store, etcd): (Arc<dyn ClusterStore>, _) = match &cfg.etcd {
            None => (Arc::new(FileStore { path: layout.state_file() }), None),
            Some(e) => {
                let gw = Gateway::new(e)?;
                (Arc::new(EtcdRecord::new(gw.clone(), &e.prefix, &cfg.cluster_name)), Some(gw))
            }
        };
        Ok(Arc::new(Ctx {
            cfg,
            bin: OnceLock::new(),
            runas,
            layout,
            store,
            etcd,
            here: OnceLock::new(),
            leases: Default::default(),
        }))
    }

    /// The same host and installation with another (newer) config.
    pub(crate) fn with_config(base: &Ctx, cfg: Config) -> Result<Arc<Ctx>> {
        let ctx = Ctx::new(cfg)?;
        if let Some(b) = base.bin.get() {
            let _ = ctx.bin.set(b.clone());
        }
        Ok(ctx)
    }

    /// Whether `node` runs on this machine (its host is one of our addresses).
    pub(crate) fn is_here(&self, node: &Node) -> bool {
        crate::store::local::is_local(&node.host, self.here.get_or_init(crate::store::local::local_addresses))
    }

    /// Across hosts, the node holding the leader lease (`Ok(None)` on one
    /// machine, where the supervisor's own lease decides).
    pub(crate) fn lease_holder(&self) -> Result<Option<String>> {
        match (&self.etcd, &self.cfg.etcd) {
            (Some(gw), Some(e)) => crate::store::etcd::leader_blocking(gw, &e.prefix, &self.cfg.cluster_name),
            _ => Ok(None),
        }
    }

    /// Record (or, with None, forget) the deadline of `node`'s lease.
    pub(crate) fn lease_until(&self, node: &str, until: Option<std::time::Instant>) {
        let mut l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        match until {
            Some(t) => l.insert(node.to_string(), t),
            None => l.remove(node),
        };
    }

    /// Whether `node`'s HA loop here holds its lease, with its deadline
    /// still ahead: the "fresh d" a leader needs before loosening what
    /// protects commits.
    pub(crate) fn holds_lease(&self, node: &str) -> bool {
        let l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        l.get(node).is_some_and(|t| *t > std::time::Instant::now())
    }

    /// Across hosts, the commands' requests to the agents.
    pub(crate) fn requests(&self) -> Option<crate::store::etcd::Requests> {
        match (&self.etcd, &self.cfg.etcd) {
            (Some(gw), Some(e)) => {
                Some(crate::store::etcd::Requests::new(gw.clone(), &e.prefix, &self.cfg.cluster_name))
            }
            _ => None,
        }
    }

    /// Across hosts, the leader key's name.
    pub(crate) fn leader_key(&self) -> Option<String> {
        self.cfg.etcd.as_ref().map(|e| crate::store::etcd::leader_key(&e.prefix, &self.cfg.cluster_name))
    }

    /// Across hosts, every member key agents published: `(node, JSON)`.
    pub(crate) fn members(&self) -> Result<Vec<(String, String)>> {
        match (&self.etcd, &self.cfg.etcd) {
            (Some(gw), Some(e)) => crate::store::etcd::read_members(gw, &e.prefix, &self.cfg.cluster_name),
            _ => Ok(Vec::new()),
        }
    }

    /// The etcd members, when the cluster runs across hosts (`[etcd]`).
    pub(crate) fn etcd(&self) -> Option<&Arc<Gateway>> {
        self.etcd.as_ref()
    }

    /// Where the cluster's record is kept.
    pub(crate) fn store(&self) -> &dyn ClusterStore {
        self.store.as_ref()
    }

    /// The same, to change the record on a blocking thread (across hosts
    /// each change is HTTP calls to etcd) without holding up async work.
    pub(crate) fn store_handle(&self) -> Arc<dyn ClusterStore> {
        self.store.clone()
    }

    /// This host's bookkeeping (slots made, the max_wal_senders floor).
    pub(crate) fn bookkeeping(&self) -> Result<Bookkeeping> {
        Bookkeeping::load(&self.layout.state_file())
    }

    /// Change this host's bookkeeping.
    pub(crate) fn update_bookkeeping<T>(&self, f: impl FnOnce(&mut Bookkeeping) -> T) -> Result<T> {
        Bookkeeping::update(&self.layout.state_file(), f)
    }

    /// The PostgreSQL installation, found on first use.
    pub(crate) fn bin(&self) -> Result<&PgBin> {
        if let Some(b) = self.bin.get() {
            return Ok(b);
        }
        let found = bin::find(self.cfg.postgres_bin.as_deref())?;
        Ok(self.bin.get_or_init(|| found))
    }

    /// Superuser connection over the node's socket. Bounded as a whole: a
    /// frozen postmaster accepts on its socket but never answers the startup.
    pub(crate) async fn connect(&self, node: &Node) -> Result<Client> {
        let socket_dir = self.layout.socket_dir();
        let connect = sql::connect_socket(&socket_dir, node.port, &self.runas.name, "postgres");
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(r) => r.map_err(|e| {
                Error::sql(format!("connecting to {} through {}", node.name, self.layout.socket_dir().display()), e)
            }),
            Err(_) => Err(self.unresponsive(node)),
        }
    }

    fn unresponsive(&self, node: &Node) -> Error {
        let dir = if node.data_dir.join("PG_VERSION").exists() {
            String::new()
        } else {
            format!("; its data dir {} is gone", node.data_dir.display())
        };
        Error::Timeout(format!(
            "{} did not answer a connection within {}s (frozen, hung or overloaded){dir}",
            node.name,
            CONNECT_TIMEOUT.as_secs()
        ))
    }

    /// Connection as `[monitor] role` over TCP (observing without the
    /// superuser or the replication secret), if that role is set.
    pub(crate) async fn connect_monitor(&self, node: &Node) -> Option<Result<Client>> {
        let name = self.cfg.monitor.role.as_deref()?;
        let role = self.cfg.roles.iter().find(|r| r.name == name)?;
        let empty = crate::config::Secret::new(String::new());
        let password = role.password.as_ref().unwrap_or(&empty);
        let tls = match self.cfg.tls.as_ref().map(crate::pg::tls::make_tls).transpose() {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let connect = sql::connect_tcp(&node.host, node.port, name, password, "postgres", tls);
        Some(match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(r) => r.map_err(|e| {
                Error::sql(format!("connecting to {} at {}:{} as {name}", node.name, node.host, node.port), e)
            }),
            Err(_) => Err(self.unresponsive(node)),
        })
    }

    /// Connection as the replication role over TCP (for nodes on other hosts).
    pub(crate) async fn connect_remote(&self, node: &Node) -> Result<Client> {
        let r = &self.cfg.replication;
        let tls = self.cfg.tls.as_ref().map(crate::pg::tls::make_tls).transpose()?;
        let connect = sql::connect_tcp(&node.host, node.port, &r.user, &r.password, "postgres", tls);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(r) => {
                r.map_err(|e| Error::sql(format!("connecting to {} at {}:{}", node.name, node.host, node.port), e))
            }
            Err(_) => Err(self.unresponsive(node)),
        }
    }
}
