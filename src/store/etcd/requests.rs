//! Requests from a command to the agents: `<prefix>/<cluster>/requests/move`
//! for a switchover or failover, `requests/node/<node>` for what the agent
//! that owns a node does to it (rejoin, reclone, restart of a standby).
//!
//! A command on any host creates the key only if it is absent, on a lease
//! as long as the command waits: the key is also the cluster-wide lock for
//! moves of the primary (one switchover or failover at a time), and a
//! command that dies leaves nothing behind once the lease runs out. The agents carry the move out on their own nodes
//! and write its progress (state and steps) back into the key; the command
//! follows it there.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::gateway::{b64, int, unb64, Gateway};
use crate::error::{Error, Result};

/// Which move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Switchover,
    Failover,
}

/// Where a move stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Progress {
    /// Asked for; the leader's agent has not acted yet.
    Requested,
    /// Failover: the old leader stopped its postgres and gave up its key
    /// (or had none): the target, or the best candidate, takes it.
    Released,
    /// The leader checkpointed and is stopping its postgres.
    Stopping,
    /// The leader's postgres is stopped at `lsn`; it waits for the target.
    Stopped,
    /// The target replayed past `lsn` and the leader gave up its key: the
    /// target takes it and promotes.
    HandedOver,
    Done,
    Failed,
}

/// A move request and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Move {
    pub kind: Kind,
    /// The leader when it was asked (failover: the recorded primary).
    pub from: String,
    /// The target; empty for a failover to the best candidate.
    pub to: String,
    /// Failover: the leader stops its postgres and gives up its key.
    #[serde(default)]
    pub stop_primary: bool,
    /// Failover in the sync modes: a standby outside the synchronous set may be promoted.
    #[serde(default)]
    pub allow_data_loss: bool,
    /// `--max-lag`, in bytes.
    pub max_lag: u64,
    /// How long the target may take to replay the old primary's last WAL.
    pub timeout_secs: u64,
    pub progress: Progress,
    /// The steps so far, in order, as the command prints them.
    pub steps: Vec<String>,
    /// The old primary's shutdown checkpoint, once stopped.
    pub lsn: Option<String>,
    /// Why it failed, or the closing sentence when done.
    pub outcome: Option<String>,
}

/// The requests of one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Requests {
    gw: Arc<Gateway>,
    base: String,
}

/// What a command asks the agent that owns `node` to do to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeAction {
    pub node: String,
    pub action: Action,
    /// `reclone --discard`: delete the old data dir instead of keeping it aside.
    #[serde(default)]
    pub discard: bool,
    /// A drill's freeze: how long it lasts.
    #[serde(default)]
    pub seconds: Option<u64>,
    pub progress: ActionProgress,
    /// What the agent printed while it did it.
    pub steps: Vec<String>,
    /// Why it failed, or what it did.
    pub outcome: Option<String>,
}

impl NodeAction {
    /// A fresh request.
    pub(crate) fn new(node: &str, action: Action, discard: bool, seconds: Option<u64>) -> NodeAction {
        NodeAction {
            node: node.to_string(),
            action,
            discard,
            seconds,
            progress: ActionProgress::Requested,
            steps: Vec::new(),
            outcome: None,
        }
    }

    /// The command's name for it.
    pub(crate) fn verb(&self) -> &'static str {
        match (self.action, self.discard) {
            (Action::Rejoin, _) => "rejoin",
            (Action::Reclone, false) => "reclone",
            (Action::Reclone, true) => "reclone --discard",
            (Action::Restart, _) => "restart",
            (Action::Reload, _) => "reload",
            (Action::KillPostgres, _) => "kill-postgres",
            (Action::FreezePostgres, _) => "freeze-postgres",
            (Action::KillAgent, _) => "kill-agent",
            (Action::IsolatePrimary, _) => "isolate-primary",
            (Action::FreezeHost, _) => "freeze-host",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Rejoin,
    Reclone,
    Restart,
    /// Reload the node with its host's config file as it is now.
    Reload,
    /// A drill's fault: SIGKILL the postmaster and every backend.
    KillPostgres,
    /// A drill's fault: SIGSTOP them for `seconds`, then SIGCONT.
    FreezePostgres,
    /// A drill's fault: SIGKILL this agent; it starts again after
    /// `seconds`, as a service manager would start it.
    KillAgent,
    /// A drill's fault: cut this host off from its peers and etcd for
    /// `seconds` (blackhole routes, undone by a process of their own).
    IsolatePrimary,
    /// A drill's fault: freeze this agent, its fence and its PostgreSQL for
    /// `seconds`, as a stalled VM.
    FreezeHost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ActionProgress {
    Requested,
    Running,
    Done,
    Failed,
}

impl Requests {
    pub(crate) fn new(gw: Arc<Gateway>, prefix: &str, cluster: &str) -> Requests {
        Requests { gw, base: format!("{}/{cluster}", prefix.trim_end_matches('/')) }
    }

    fn move_key(&self) -> String {
        format!("{}/requests/move", self.base)
    }

    fn action_key(&self, node: &str) -> String {
        format!("{}/requests/node/{node}", self.base)
    }

    /// Create the move request if none is under way, on a lease of `ttl`.
    /// `Ok(Some(other))`: another move is under way, unchanged.
    pub(crate) fn create(&self, s: &Move, ttl: Duration) -> Result<Option<Move>> {
        self.create_at(&self.move_key(), s, ttl)
    }

    /// The move under way, with its mod revision.
    pub(crate) fn read(&self) -> Result<Option<(Move, i64)>> {
        self.read_at(&self.move_key())
    }

    /// Change the move request if it is still there (its lease kept);
    /// false if it is gone (its command gave up).
    pub(crate) fn update(&self, f: impl Fn(&mut Move)) -> Result<bool> {
        self.update_at(&self.move_key(), f)
    }

    /// Remove the move request (the command that made it is done with it).
    pub(crate) fn remove(&self) -> Result<()> {
        self.remove_at(&self.move_key())
    }

    /// The leader `from` gives up its key, in one transaction: only while
    /// the key still names it and the request is as it read it; the
    /// request moves to `progress` (handed over to the switchover's target,
    /// or released for a failover). False if either changed.
    pub(crate) fn give_up_lead(&self, leader_key: &str, from: &str, progress: Progress, step: &str) -> Result<bool> {
        let Some((mut s, rev)) = self.read()? else { return Ok(false) };
        s.progress = progress;
        s.steps.push(step.to_string());
        self.put_if(&self.move_key(), &s, rev, Some((leader_key, from)))
    }

    /// Ask the agent of `a.node` for `a`, one action per node at a time.
    /// `Ok(Some(other))`: another action on that node is under way.
    pub(crate) fn create_action(&self, a: &NodeAction, ttl: Duration) -> Result<Option<NodeAction>> {
        self.create_at(&self.action_key(&a.node), a, ttl)
    }

    pub(crate) fn read_action(&self, node: &str) -> Result<Option<NodeAction>> {
        Ok(self.read_at(&self.action_key(node))?.map(|(a, _)| a))
    }

    pub(crate) fn update_action(&self, node: &str, f: impl Fn(&mut NodeAction)) -> Result<bool> {
        self.update_at(&self.action_key(node), f)
    }

    pub(crate) fn remove_action(&self, node: &str) -> Result<()> {
        self.remove_at(&self.action_key(node))
    }

    fn create_at<T: Serialize + DeserializeOwned + Clone>(&self, key: &str, s: &T, ttl: Duration) -> Result<Option<T>> {
        let v = self.gw.call_blocking("/v3/lease/grant", &json!({ "TTL": ttl.as_secs().max(1) }))?;
        let id = int(&v["ID"]).ok_or_else(|| Error::Other(format!("etcd granted no lease: {v}")))?;
        let text = serde_json::to_string(s).map_err(|e| Error::Other(e.to_string()))?;
        let txn = json!({
            "compare": [{ "key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": b64(key), "value": b64(&text), "lease": id.to_string() } }],
            "failure": [{ "request_range": { "key": b64(key) } }],
        });
        let v = self.gw.call_blocking("/v3/kv/txn", &txn)?;
        if v["succeeded"].as_bool() == Some(true) {
            return Ok(None);
        }
        let _ = self.gw.call_blocking("/v3/lease/revoke", &json!({ "ID": id.to_string() }));
        let kv = &v["responses"][0]["response_range"]["kvs"][0];
        Ok(Some(decode(kv).map(|(s, _)| s).unwrap_or_else(|| s.clone())))
    }

    fn read_at<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        let v = self.gw.call_blocking("/v3/kv/range", &json!({ "key": b64(key) }))?;
        Ok(v["kvs"].get(0).and_then(decode))
    }

    fn update_at<T: Serialize + DeserializeOwned>(&self, key: &str, f: impl Fn(&mut T)) -> Result<bool> {
        for _ in 0..20 {
            let Some((mut s, rev)) = self.read_at::<T>(key)? else { return Ok(false) };
            f(&mut s);
            if self.put_if(key, &s, rev, None)? {
                return Ok(true);
            }
        }
        Err(Error::Other(format!("the request {key} changed under us 20 times in a row")))
    }

    fn put_if<T: Serialize>(&self, key: &str, s: &T, rev: i64, leader: Option<(&str, &str)>) -> Result<bool> {
        let text = serde_json::to_string(s).map_err(|e| Error::Other(e.to_string()))?;
        let mut compare =
            vec![json!({ "key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string() })];
        let mut success =
            vec![json!({ "request_put": { "key": b64(key), "value": b64(&text), "ignore_lease": true } })];
        if let Some((leader_key, from)) = leader {
            compare.push(json!({ "key": b64(leader_key), "target": "VALUE", "result": "EQUAL", "value": b64(from) }));
            success.push(json!({ "request_delete_range": { "key": b64(leader_key) } }));
        }
        let v = self.gw.call_blocking("/v3/kv/txn", &json!({ "compare": compare, "success": success }))?;
        Ok(v["succeeded"].as_bool() == Some(true))
    }

    fn remove_at(&self, key: &str) -> Result<()> {
        self.gw.call_blocking("/v3/kv/deleterange", &json!({ "key": b64(key) }))?;
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(kv: &serde_json::Value) -> Option<(T, i64)> {
    let text = kv["value"].as_str().and_then(unb64)?;
    Some((serde_json::from_str(&text).ok()?, int(&kv["mod_revision"]).unwrap_or(0)))
}
