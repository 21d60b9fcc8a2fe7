//! The dashboard's events, newest last: those in the cluster's record
//! (moves, rejoins, reclones, pause and resume, from whichever process made
//! them) and those the agent sees between two snapshots (the HA loop's
//! decisions, automatic restarts, nodes that stop or start, durability
//! changes, the record becoming unreadable). Each has its reason sentence.

use std::collections::VecDeque;

use serde::Serialize;

use crate::domain::sentence::gist;
use crate::observe::snapshot::Snapshot;

/// Events kept in memory.
pub(crate) const CAPACITY: usize = 200;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Event {
    /// Its place in the list, for the page to tell new from seen.
    pub id: u64,
    /// Unix time, seconds.
    pub at: f64,
    /// `switchover`, `failover`, `rejoin`, `reclone`, `needs_reclone`,
    /// `pause`, `resume` (from the record); `decision`, `restart`,
    /// `state`, `primary`, `durability`, `record` (seen by the agent).
    pub kind: String,
    /// The node it concerns, `-` for the whole cluster.
    pub node: String,
    pub message: String,
}

/// The last [`CAPACITY`] events.
#[derive(Debug, Default)]
pub(crate) struct Events {
    list: VecDeque<Event>,
    next_id: u64,
    /// The newest record event taken: the record is read whole each time.
    record_seen: Option<f64>,
}

impl Events {
    /// Take the events between `prev` and `next` (`prev` is `None` for the
    /// first snapshot: then only the record's events). Returns how many
    /// were added.
    pub(crate) fn update(&mut self, prev: Option<&Snapshot>, next: &Snapshot) -> usize {
        let mut found: Vec<(f64, String, String, String)> = Vec::new();
        for r in next.recorded.iter().filter(|r| self.record_seen.is_none_or(|seen| r.at > seen)) {
            found.push((r.at, r.kind.clone(), r.node.clone(), r.message.clone()));
        }
        if let Some(newest) = next.recorded.iter().map(|r| r.at).reduce(f64::max) {
            self.record_seen = Some(self.record_seen.map_or(newest, |s| s.max(newest)));
        }
        if let Some(prev) = prev {
            let at = next.taken_unix;
            found.extend(seen(prev, next).into_iter().map(|(k, n, m)| (at, k.to_string(), n, m)));
        }
        let added = found.len();
        for (at, kind, node, message) in found {
            if self.list.len() == CAPACITY {
                self.list.pop_front();
            }
            self.list.push_back(Event { id: self.next_id, at, kind, node, message });
            self.next_id += 1;
        }
        added
    }

    /// Every event kept, oldest first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Event> {
        self.list.iter()
    }

    /// The newest `n`, oldest first.
    pub(crate) fn newest(&self, n: usize) -> impl Iterator<Item = &Event> {
        self.list.iter().skip(self.list.len().saturating_sub(n))
    }

    /// Bytes held, heap included.
    pub(crate) fn bytes(&self) -> usize {
        let text: usize = self.list.iter().map(|e| e.kind.capacity() + e.node.capacity() + e.message.capacity()).sum();
        size_of::<Self>() + self.list.capacity() * size_of::<Event>() + text
    }
}

/// What changed between two snapshots, as (kind, node, sentence).
pub(crate) fn seen(prev: &Snapshot, next: &Snapshot) -> Vec<(&'static str, String, String)> {
    let (p, n) = (&prev.status, &next.status);
    let mut out = Vec::new();
    if let Some(ha) = &n.ha {
        // Decisions count seconds: a new one is a new gist.
        let names: Vec<&str> = n.nodes.iter().map(|x| x.name.as_str()).collect();
        if p.ha.as_deref().is_none_or(|old| gist(old, &names) != gist(ha, &names)) {
            out.push(("decision", "-".to_string(), ha.clone()));
        }
    }
    if p.primary != n.primary {
        out.push(("primary", n.primary.clone(), format!("{} is the primary now (it was {})", n.primary, p.primary)));
    }
    for (node, count) in &next.restarts {
        let before = prev.restarts.iter().find(|(n, _)| n == node).map_or(0, |(_, c)| *c);
        if *count > before {
            out.push((
                "restart",
                node.clone(),
                format!("the supervisor restarted {node}'s postgres after it died ({count} restarts so far)"),
            ));
        }
    }
    for node in &n.nodes {
        let Some(old) = p.nodes.iter().find(|o| o.name == node.name) else { continue };
        if old.state != node.state {
            let why = node.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
            out.push((
                "state",
                node.name.clone(),
                format!("{} is {} (it was {}){why}", node.name, node.state, old.state),
            ));
        }
    }
    let durability = |s: &Snapshot| s.status.durability.as_ref().and_then(|d| d["state"].as_str().map(str::to_string));
    if let (Some(before), Some(now)) = (durability(prev), durability(next)) {
        if before != now {
            let why = n.durability.as_ref().and_then(|d| d["why"].as_str()).unwrap_or("");
            out.push((
                "durability",
                "-".to_string(),
                format!("synchronous replication is {now} (it was {before}) {why}").trim_end().to_string(),
            ));
        }
    }
    match (&p.state_error, &n.state_error) {
        (None, Some(e)) => out.push(("record", "-".to_string(), format!("the cluster's record cannot be read: {e}"))),
        (Some(_), None) => out.push(("record", "-".to_string(), "the cluster's record can be read again".to_string())),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::snapshot::example;
    use crate::observe::status::NodeState;
    use crate::store::state::EventRecord;

    #[test]
    fn the_first_snapshot_brings_the_records_events_and_nothing_else() {
        let mut ev = Events::default();
        assert_eq!(ev.update(None, &example()), 1);
        let e = ev.all().next().unwrap();
        assert_eq!((e.kind.as_str(), e.node.as_str()), ("switchover", "pg-1"));
        // The record is read whole each time: what was taken is not taken twice.
        assert_eq!(ev.update(Some(&example()), &example()), 0);
    }

    #[test]
    fn a_new_record_event_is_taken_once() {
        let mut ev = Events::default();
        let mut snap = example();
        ev.update(None, &snap);
        let prev = snap.clone();
        snap.recorded.push(EventRecord {
            at: snap.taken_unix,
            kind: "pause".into(),
            node: "-".into(),
            message: "paused by alice".into(),
        });
        assert_eq!(ev.update(Some(&prev), &snap), 1);
        assert_eq!(ev.update(Some(&snap), &snap), 0);
        assert_eq!(ev.newest(1).next().unwrap().message, "paused by alice");
    }

    #[test]
    fn a_stopped_node_a_restart_and_a_new_decision_are_seen() {
        let prev = example();
        let mut next = example();
        next.status.nodes[1].state = NodeState::Stopped;
        next.restarts[0].1 = 1;
        next.status.ha = Some("primary pg-1 is down for 3.1s; waiting".into());
        let kinds: Vec<_> = seen(&prev, &next).into_iter().map(|(k, n, _)| format!("{k} {n}")).collect();
        assert_eq!(kinds, ["decision -", "restart pg-1", "state pg-2"]);
        let mut later = next.clone();
        later.status.ha = Some("primary pg-1 is down for 4.2s; waiting".into());
        assert!(seen(&next, &later).is_empty(), "the same decision a second later is no new event");
        let mut other = later.clone();
        other.status.ha = Some("primary pg-2 is down for 4.2s; waiting".into());
        assert_eq!(seen(&later, &other).len(), 1, "about another node, it is a new decision");
    }

    #[test]
    fn a_new_primary_and_an_unreadable_record_are_seen() {
        let prev = example();
        let mut next = example();
        next.status.primary = "pg-2".into();
        next.status.state_error = Some("etcd unreachable".into());
        let got = seen(&prev, &next);
        assert_eq!(got[0].2, "pg-2 is the primary now (it was pg-1)");
        assert_eq!(got[1].2, "the cluster's record cannot be read: etcd unreachable");
    }

    #[test]
    fn the_list_is_bounded() {
        let mut ev = Events::default();
        let mut prev = example();
        for i in 0..CAPACITY + 10 {
            let mut next = prev.clone();
            next.status.primary = format!("pg-{}", i % 3 + 1);
            next.status.ha = Some(format!("decision {}", "x".repeat(i % 5)));
            ev.update(Some(&prev), &next);
            prev = next;
        }
        assert_eq!(ev.all().count(), CAPACITY);
        let ids: Vec<u64> = ev.all().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] + 1 == w[1]), "oldest first, no gap");
    }
}
