//! The context every command works in: the validated config, the
//! PostgreSQL installation, the OS identity PostgreSQL runs as, and the
//! data-root layout. Built once per command and passed explicitly.

use std::sync::Arc;

use tokio_postgres::Client;

use crate::config::{Config, Node, Role};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::os_user::RunAs;
use crate::pg::bin::{self, PgBin};
use crate::pg::sql;
use crate::state::State;

/// Shared, read-only context.
#[derive(Debug)]
pub struct Ctx {
    pub cfg: Config,
    pub bin: PgBin,
    pub runas: RunAs,
    pub layout: Layout,
}

impl Ctx {
    /// Find the binaries and the OS identity for `cfg`.
    pub fn new(cfg: Config) -> Result<Arc<Ctx>> {
        let bin = bin::find(cfg.postgres_bin.as_deref())?;
        let runas = RunAs::resolve(&cfg.os_user)?;
        let layout = Layout::new(&cfg.data_root);
        Ok(Arc::new(Ctx { cfg, bin, runas, layout }))
    }

    /// The node that is primary now: the state file's, else the bootstrap one.
    pub fn current_primary(&self) -> &Node {
        State::load(&self.layout.state_file())
            .ok()
            .and_then(|s| s.primary)
            .and_then(|p| self.cfg.nodes.iter().find(|n| n.name == p))
            .unwrap_or_else(|| self.cfg.bootstrap_primary())
    }

    /// The role `node` has now.
    pub fn role_of(&self, node: &Node) -> Role {
        if node.name == self.current_primary().name {
            Role::Primary
        } else {
            Role::Replica
        }
    }

    /// Superuser connection over the node's socket.
    pub async fn connect(&self, node: &Node) -> Result<Client> {
        sql::connect_socket(&self.layout.socket_dir(), node.port, &self.runas.name, "postgres").await.map_err(|e| {
            Error::sql(format!("connecting to {} through {}", node.name, self.layout.socket_dir().display()), e)
        })
    }

    /// Connection as the replication role over TCP (for nodes on other hosts).
    pub async fn connect_remote(&self, node: &Node) -> Result<Client> {
        let r = &self.cfg.replication;
        sql::connect_tcp(&node.host, node.port, &r.user, &r.password, "postgres")
            .await
            .map_err(|e| Error::sql(format!("connecting to {} at {}:{}", node.name, node.host, node.port), e))
    }
}
