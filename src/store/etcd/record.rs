//! The cluster's record ([`State`]) as one etcd key, `<prefix>/<cluster>/state`,
//! changed by compare-and-set on its mod revision: two agents (or a command
//! and an agent) changing it at once never undo each other's change; the
//! loser reads again and reapplies its change.

use std::sync::Arc;

use serde_json::json;

use super::gateway::{b64, int, unb64, Gateway};
use crate::error::{Error, Result};
use crate::store::record::ClusterStore;
use crate::store::state::State;

/// How often a change is retried against concurrent writers.
const CAS_ATTEMPTS: usize = 20;

#[derive(Debug)]
pub(crate) struct EtcdRecord {
    gw: Arc<Gateway>,
    key: String,
}

impl EtcdRecord {
    pub(crate) fn new(gw: Arc<Gateway>, prefix: &str, cluster: &str) -> EtcdRecord {
        EtcdRecord { gw, key: format!("{}/{cluster}/state", prefix.trim_end_matches('/')) }
    }

    /// The record and its mod revision (0: no record yet).
    fn read(&self) -> Result<(State, i64)> {
        let v = self.gw.call_blocking("/v3/kv/range", &json!({ "key": b64(&self.key) }))?;
        let Some(kv) = v["kvs"].get(0) else { return Ok((State::default(), 0)) };
        let text = kv["value"].as_str().and_then(unb64).unwrap_or_default();
        let st = serde_json::from_str(&text)
            .map_err(|e| Error::Other(format!("the cluster's record in etcd ({}) is not valid: {e}", self.key)))?;
        Ok((st, int(&kv["mod_revision"]).unwrap_or(0)))
    }
}

impl ClusterStore for EtcdRecord {
    fn load(&self) -> Result<State> {
        Ok(self.read()?.0)
    }

    fn change(&self, f: &mut dyn FnMut(&mut State)) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut st, rev) = self.read()?;
            f(&mut st);
            let text = serde_json::to_string(&st).map_err(|e| Error::Other(e.to_string()))?;
            // Absent keys have mod revision 0, so one comparison covers both.
            let txn = json!({
                "compare": [{ "key": b64(&self.key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string() }],
                "success": [{ "request_put": { "key": b64(&self.key), "value": b64(&text) } }],
            });
            if self.gw.call_blocking("/v3/kv/txn", &txn)?["succeeded"].as_bool() == Some(true) {
                return Ok(());
            }
        }
        Err(Error::Other(format!(
            "the cluster's record in etcd changed under us {CAS_ATTEMPTS} times in a row; try again"
        )))
    }
}
