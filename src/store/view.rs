//! The cluster's shared facts as one value, read once per command: today,
//! which node is primary (the HA loop still reads the fenced, paused and
//! sync-set facts from the state file itself; they join the view with the
//! etcd store). Code above the store learns who the primary is only from a
//! view. A record that cannot be read is an error the caller sees; a caller
//! that only shows or orders things says so by calling
//! [`ClusterView::read_for_display`].

use crate::config::{Config, Node, Role};
use crate::error::{Error, Result};
use crate::store::ctx::Ctx;
use crate::store::state::State;

/// One read of the cluster's record.
#[derive(Debug, Clone)]
pub(crate) struct ClusterView {
    /// The node that is primary now (the bootstrap primary before one is recorded).
    pub primary: Node,
}

impl ClusterView {
    /// The record as it is: an unreadable one, or one naming a primary the
    /// config no longer has, is an error.
    pub(crate) fn read(ctx: &Ctx) -> Result<ClusterView> {
        ClusterView::of(&ctx.cfg, &ctx.store().load()?)
    }

    /// The view of a state already read.
    pub(crate) fn of(cfg: &Config, st: &State) -> Result<ClusterView> {
        let primary = match &st.primary {
            None => cfg.bootstrap_primary().clone(),
            Some(p) => cfg.nodes.iter().find(|n| &n.name == p).cloned().ok_or_else(|| {
                Error::Refused(format!(
                    "the recorded primary {p} is not in {}; put it back, or restore the state file",
                    cfg.path.display()
                ))
            })?,
        };
        Ok(ClusterView { primary })
    }

    /// For what only shows or orders things (a summary, the order nodes
    /// stop in): when the record cannot be read, the bootstrap primary
    /// stands in. Nothing that changes a role may use this.
    pub(crate) fn read_for_display(ctx: &Ctx) -> ClusterView {
        ClusterView::read(ctx).unwrap_or_else(|_| ClusterView::unrecorded(&ctx.cfg))
    }

    /// A cluster with nothing recorded yet.
    pub(crate) fn unrecorded(cfg: &Config) -> ClusterView {
        ClusterView { primary: cfg.bootstrap_primary().clone() }
    }

    /// The role `node` has now.
    pub(crate) fn role_of(&self, node: &Node) -> Role {
        if node.name == self.primary.name {
            Role::Primary
        } else {
            Role::Replica
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let toml = "[cluster]\nname = \"c\"\n[replication]\npassword = \"x\"\n[[node]]\nname = \"pg-1\"\nport = 15432\n[[node]]\nname = \"pg-2\"\nport = 15433\n";
        crate::config::parse(std::path::Path::new("/tmp/pgrepl.toml"), toml).unwrap()
    }

    #[test]
    fn the_recorded_primary_decides_roles_and_no_record_means_the_bootstrap_primary() {
        let cfg = cfg();
        let fresh = ClusterView::of(&cfg, &State::default()).unwrap();
        assert_eq!(fresh.primary.name, "pg-1");
        let moved = ClusterView::of(&cfg, &State { primary: Some("pg-2".into()), ..State::default() }).unwrap();
        assert_eq!(moved.role_of(&cfg.nodes[0]), Role::Replica);
        assert_eq!(moved.role_of(&cfg.nodes[1]), Role::Primary);
    }

    #[test]
    fn a_recorded_primary_missing_from_the_config_is_an_error_not_a_guess() {
        let e = ClusterView::of(&cfg(), &State { primary: Some("pg-9".into()), ..State::default() }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the recorded primary pg-9 is not in /tmp/pgrepl.toml; put it back, or restore the state file"
        );
    }
}
