//! The built-in dashboard's model: what the page at `/ui/` is sent. Pure:
//! snapshots in, Server-Sent Events frames out; the agent's task
//! (`agent::dashboard`) feeds it and the API streams its frames.
//!
//! A page connects to `/ui/events` and gets one `init` frame (the settings,
//! the latest snapshot, the last hour of samples and the events), then one
//! `update` frame per snapshot. Each frame's `id` is the newest sample's
//! sequence number, so a browser that reconnects (EventSource does so by
//! itself, sending `Last-Event-ID`) is sent only the samples it missed.

pub(crate) mod events;
pub(crate) mod samples;

use serde_json::{json, Value};

use crate::observe::document::StatusDocument;
use crate::observe::snapshot::Snapshot;
use events::Events;
use samples::Ring;

/// How a reconnecting browser is told to wait before it tries again, ms.
const RETRY_MS: u32 = 1000;

/// The dashboard's memory: charts, events and the latest snapshot.
#[derive(Debug)]
pub(crate) struct Board {
    /// Settings the page needs (thresholds, whether writes are on).
    settings: Value,
    ring: Ring,
    events: Events,
    latest: Option<std::sync::Arc<Snapshot>>,
}

impl Board {
    pub(crate) fn new(settings: Value) -> Board {
        Board { settings, ring: Ring::default(), events: Events::default(), latest: None }
    }

    /// Take a snapshot in; with `watched`, the `update` frame to send to
    /// every open page (with no page open the frame is not built: a page
    /// that opens later gets everything in its `init` frame).
    pub(crate) fn push(&mut self, snap: std::sync::Arc<Snapshot>, watched: bool) -> Option<String> {
        let added = self.events.update(self.latest.as_deref(), &snap);
        let sample = self.ring.push(&snap).cloned();
        let frame_of = |me: &Self| {
            let body = json!({
                "snapshot": document(&snap),
                "sample": sample.as_ref().map(|s| me.ring.json(s)),
                "events": me.events.newest(added).collect::<Vec<_>>(),
                "memory": me.memory(),
            });
            frame(me.last_seq(), "update", &body)
        };
        let out = watched.then(|| frame_of(self));
        self.latest = Some(snap);
        out
    }

    /// The `init` frame for a page that has the samples up to `since`
    /// (every sample for `None`).
    pub(crate) fn init(&self, since: Option<u64>) -> String {
        let samples: Vec<Value> = self.ring.since(since).map(|s| self.ring.json(s)).collect();
        let events: Vec<_> = self.events.all().collect();
        let body = json!({
            "settings": self.settings,
            "snapshot": self.latest.as_deref().map(document),
            "samples": samples,
            "events": events,
            "memory": self.memory(),
        });
        format!("retry: {RETRY_MS}\n{}", frame(self.last_seq(), "init", &body))
    }

    /// What the charts and the events hold in memory.
    pub(crate) fn memory(&self) -> Value {
        json!({
            "samples": self.ring.len(),
            "sample_capacity": samples::CAPACITY,
            "history_bytes": self.ring.bytes(),
            "events": self.events.all().count(),
            "events_bytes": self.events.bytes(),
        })
    }

    fn last_seq(&self) -> Option<u64> {
        self.ring.since(None).last().map(|s| s.seq)
    }
}

/// The snapshot as the page reads it: the `status --json` document, with
/// the supervisor's restart counts and when it was taken.
fn document(snap: &Snapshot) -> Value {
    let mut doc = serde_json::to_value(StatusDocument::new(&snap.status, &snap.health)).unwrap_or_default();
    doc["taken_unix"] = json!(snap.taken_unix);
    doc["restarts"] = json!(snap.restarts.iter().map(|(n, c)| json!({"node": n, "count": c})).collect::<Vec<_>>());
    doc
}

/// One Server-Sent Events frame. JSON has no raw newline, so one `data:`
/// line carries it.
fn frame(id: Option<u64>, event: &str, body: &Value) -> String {
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    format!("{id}event: {event}\ndata: {body}\n\n")
}

/// A comment line: keeps an idle stream open through proxies, and lets a
/// server notice a client that went away.
pub(crate) const KEEPALIVE: &str = ": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::snapshot::example;
    use std::sync::Arc;

    fn data(frame: &str) -> Value {
        let line = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_page_gets_the_history_then_one_update_per_snapshot() {
        let mut b = Board::new(json!({"write": false}));
        assert_eq!(b.push(Arc::new(example()), false), None, "no page, no frame");
        let mut b = Board::new(json!({"write": false}));
        let first = b.push(Arc::new(example()), true).unwrap();
        assert!(first.starts_with("id: 0\nevent: update\n"), "{first}");
        assert_eq!(data(&first)["events"][0]["kind"], "switchover");
        let mut later = example();
        later.taken_unix += 1.0;
        later.status.nodes[1].state = crate::observe::status::NodeState::Stopped;
        let second = data(&b.push(Arc::new(later), true).unwrap());
        assert_eq!(second["snapshot"]["nodes"][1]["state"], "stopped");
        assert_eq!(second["events"][0]["message"], "pg-2 is stopped (it was running)");
        assert_eq!(second["sample"]["seq"], 1);

        let init = b.init(None);
        assert!(init.starts_with("retry: 1000\nid: 1\nevent: init\n"), "{init}");
        let v = data(&init);
        assert_eq!(v["samples"].as_array().unwrap().len(), 2);
        assert_eq!(v["events"].as_array().unwrap().len(), 2);
        assert_eq!(v["settings"]["write"], false);
        assert_eq!(v["memory"]["samples"], 2);
        // A reconnect that has sample 0 is sent sample 1 only.
        assert_eq!(data(&b.init(Some(0)))["samples"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn before_any_snapshot_the_page_is_told_so() {
        let b = Board::new(json!({}));
        let v = data(&b.init(None));
        assert!(v["snapshot"].is_null());
        assert!(!b.init(None).contains("\nid:"), "no sample, no id");
    }
}
