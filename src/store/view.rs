//! The cluster's shared facts as one value, read once per command or HA
//! cycle: which node is primary, and the nodes the record holds back
//! (fenced, needs-reclone), maintenance mode and the synchronous set. Code
//! above the store learns who the primary is only from a view. A record
//! that cannot be read, or that names a primary the config lacks, is an
//! error the caller sees; a caller that only shows or orders things says
//! so by calling [`ClusterView::read_for_display`].

use crate::config::{Config, Node, Role};
use crate::error::{Error, Result};
use crate::store::ctx::Ctx;
use crate::store::state::State;

/// One read of the cluster's record.
#[derive(Debug, Clone)]
pub(crate) struct ClusterView {
    /// The node that is primary now (the bootstrap primary before one is recorded).
    pub primary: Node,
    /// Former primaries that must be rewound before they run again.
    pub fenced: Vec<String>,
    /// Standbys that cannot follow and wait for a re-clone.
    pub needs_reclone: Vec<String>,
    /// `pgrepl pause`: since when and why.
    pub paused: Option<String>,
    /// The standbys that hold every acknowledged commit (the sync modes).
    pub sync_set: Vec<String>,
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
        Ok(ClusterView {
            primary,
            fenced: st.fenced.clone(),
            needs_reclone: st.needs_reclone.clone(),
            paused: st.paused.clone(),
            sync_set: st.sync_set.clone(),
        })
    }

    /// For what only shows or orders things (a summary, the order nodes
    /// stop in): when the record cannot be read, the bootstrap primary
    /// stands in. Nothing that changes a role may use this.
    pub(crate) fn read_for_display(ctx: &Ctx) -> ClusterView {
        ClusterView::read(ctx).unwrap_or_else(|_| ClusterView::unrecorded(&ctx.cfg))
    }

    /// A cluster with nothing recorded yet.
    pub(crate) fn unrecorded(cfg: &Config) -> ClusterView {
        ClusterView::of(cfg, &State::default()).expect("the bootstrap primary is in the config")
    }

    /// The record keeps `node` from running as it is (fenced or
    /// needs-reclone).
    pub(crate) fn holds_back(&self, node: &str) -> bool {
        self.fenced.iter().any(|f| f == node) || self.needs_reclone.iter().any(|f| f == node)
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
    fn the_view_carries_what_the_record_holds_back_pause_and_the_sync_set() {
        let st = State {
            fenced: vec!["pg-1".into()],
            needs_reclone: vec!["pg-3".into()],
            paused: Some("since 10:00: upgrade".into()),
            sync_set: vec!["pg-2".into()],
            primary: Some("pg-2".into()),
            ..State::default()
        };
        let v = ClusterView::of(&cfg(), &st).unwrap();
        assert!(v.holds_back("pg-1") && v.holds_back("pg-3") && !v.holds_back("pg-2"));
        assert_eq!(
            (v.paused.as_deref(), v.sync_set.as_slice()),
            (Some("since 10:00: upgrade"), &["pg-2".to_string()][..])
        );
        let fresh = ClusterView::unrecorded(&cfg());
        assert!(fresh.fenced.is_empty() && fresh.paused.is_none() && fresh.sync_set.is_empty());
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
