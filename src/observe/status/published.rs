//! What an agent publishes about its own nodes across hosts (the member
//! keys, [`crate::store::etcd::Members`]), and how a gatherer on another
//! host fills in from it what it cannot read itself: a node's WAL receiver,
//! upstream and timeline need the superuser, and the replication rows and
//! slots live on the primary. A direct probe that finds a node down or
//! frozen wins over what was published (it is fresher about liveness).

use serde::{Deserialize, Serialize};

use super::{NodeState, NodeStatus, Replication, SlotStatus};

/// One node as its own host sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Published {
    pub status: NodeStatus,
    /// On a primary: how it sees each standby (by node name), and its slots.
    #[serde(default)]
    pub replication: Vec<(String, Replication)>,
    #[serde(default)]
    pub slots: Vec<SlotStatus>,
    /// Its host's latest HA sentence and durability plan.
    pub ha: Option<String>,
    pub durability: Option<serde_json::Value>,
}

impl Published {
    /// `name` as this host's snapshot shows it.
    pub(crate) fn of(st: &super::ClusterStatus, name: &str) -> Option<Published> {
        let status = st.nodes.iter().find(|n| n.name == name)?.clone();
        let primary = status.is_writable_primary();
        Some(Published {
            replication: if primary {
                st.nodes.iter().filter_map(|n| Some((n.name.clone(), n.replication.clone()?))).collect()
            } else {
                Vec::new()
            },
            slots: if primary { st.slots.clone() } else { Vec::new() },
            ha: st.ha.clone(),
            durability: if primary { st.durability.clone() } else { None },
            status,
        })
    }
}

/// Fill in `st` (gathered here) from what the other hosts published;
/// `here[i]`: node i runs on this host, and what was read of it is kept.
pub(crate) fn overlay(st: &mut super::ClusterStatus, here: &[bool], published: &[Published]) {
    st.silent_agents = st
        .nodes
        .iter()
        .filter(|n| !published.iter().any(|p| p.status.name == n.name))
        .map(|n| n.name.clone())
        .collect();
    for (i, node) in st.nodes.iter_mut().enumerate() {
        if here.get(i).copied().unwrap_or(false) {
            continue;
        }
        let Some(p) = published.iter().find(|p| p.status.name == node.name) else { continue };
        // Down or frozen as seen from here: that is what status must say.
        if node.state != NodeState::Running {
            continue;
        }
        // The direct probe's role and positions are fresher than the key.
        let seen = node.clone();
        *node = NodeStatus { replication: node.replication.take(), ..p.status.clone() };
        node.role = seen.role.or(node.role);
        node.current_lsn = seen.current_lsn.or(node.current_lsn);
        node.received_lsn = seen.received_lsn.or(node.received_lsn);
        node.replayed_lsn = seen.replayed_lsn.or(node.replayed_lsn);
    }
    let Some(primary) = published.iter().find(|p| p.status.is_writable_primary()) else { return };
    let primary_here = st.nodes.iter().zip(here).any(|(n, h)| *h && n.name == primary.status.name);
    if primary_here {
        return;
    }
    for node in st.nodes.iter_mut() {
        if let Some((_, r)) = primary.replication.iter().find(|(n, _)| *n == node.name) {
            node.replication = Some(r.clone());
        }
    }
    if st.slots.is_empty() {
        st.slots = primary.slots.clone();
    }
    if st.ha.is_none() {
        st.ha = primary.ha.clone();
    }
    if st.durability.is_none() {
        st.durability = primary.durability.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn node(name: &str, role: Role, state: NodeState) -> NodeStatus {
        let mut n = crate::observe::snapshot::example().status.nodes[0].clone();
        n.name = name.into();
        n.role = Some(role);
        n.state = state;
        n.replication = None;
        n.upstream = None;
        n.wal_receiver = None;
        n
    }

    #[test]
    fn a_remote_standby_gets_its_receiver_and_lag_from_its_host_and_the_primary_and_a_dead_one_stays_dead() {
        let mut primary = node("pg-1", Role::Primary, NodeState::Running);
        let mut standby = node("pg-2", Role::Replica, NodeState::Running);
        standby.upstream = Some("pg-1".into());
        standby.wal_receiver = Some("streaming".into());
        let lag = crate::observe::snapshot::example().status.nodes.iter().find_map(|n| n.replication.clone());
        let lag = lag.expect("the example has a replica");
        primary.replication = None;
        let published = vec![
            Published {
                status: primary.clone(),
                replication: vec![("pg-2".into(), lag.clone())],
                slots: vec![],
                ha: Some("pg-1 is the leader and renewed its lease".into()),
                durability: None,
            },
            Published { status: standby, replication: vec![], slots: vec![], ha: None, durability: None },
        ];
        // Seen from a third host over TCP: both run, details unknown.
        let mut st = crate::observe::snapshot::example().status;
        st.nodes = vec![
            node("pg-1", Role::Primary, NodeState::Running),
            node("pg-2", Role::Replica, NodeState::Running),
            node("pg-3", Role::Replica, NodeState::Unreachable),
        ];
        st.ha = None;
        let mut dead = published.clone();
        dead.push(Published {
            status: node("pg-3", Role::Replica, NodeState::Running),
            replication: vec![],
            slots: vec![],
            ha: None,
            durability: None,
        });
        overlay(&mut st, &[false, false, false], &dead);
        let pg2 = &st.nodes[1];
        assert_eq!((pg2.upstream.as_deref(), pg2.wal_receiver.as_deref()), (Some("pg-1"), Some("streaming")));
        assert_eq!(pg2.replication.as_ref().map(|r| r.state.clone()), Some(lag.state.clone()));
        assert_eq!(st.nodes[2].state, NodeState::Unreachable, "the direct probe's verdict wins");
        assert!(st.silent_agents.is_empty(), "every node's agent published");
        assert_eq!(st.ha.as_deref(), Some("pg-1 is the leader and renewed its lease"));
        // A node that runs here keeps what was read of it here.
        let mut local = crate::observe::snapshot::example().status;
        local.nodes =
            vec![node("pg-1", Role::Primary, NodeState::Running), node("pg-2", Role::Replica, NodeState::Running)];
        overlay(&mut local, &[false, true], &published);
        assert_eq!(local.nodes[1].upstream, None);
        // pg-3's agent published nothing: status names it.
        let mut three = crate::observe::snapshot::example().status;
        assert_eq!(three.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["pg-1", "pg-2", "pg-3"]);
        overlay(&mut three, &[false, false, false], &published);
        assert_eq!(three.silent_agents, vec!["pg-3".to_string()]);
    }
}
