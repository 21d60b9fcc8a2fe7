//! Member keys, `<prefix>/<cluster>/members/<node>`: each agent publishes
//! what it sees of its own nodes (as the superuser, through their sockets),
//! so `status` on any host shows what only a node's own host can read. The
//! keys hang on the agent's own lease: when an agent stops renewing (its
//! host died, or it froze), its members vanish after one TTL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::gateway::{b64, int, unb64, Gateway};
use crate::error::{Error, Result};

/// This agent's member keys.
#[derive(Debug)]
pub(crate) struct Members {
    gw: Arc<Gateway>,
    dir: String,
    ttl: Duration,
    lease: Mutex<Option<i64>>,
}

fn dir(prefix: &str, cluster: &str) -> String {
    format!("{}/{cluster}/members/", prefix.trim_end_matches('/'))
}

impl Members {
    pub(crate) fn new(gw: Arc<Gateway>, prefix: &str, cluster: &str, ttl: Duration) -> Members {
        Members { gw, dir: dir(prefix, cluster), ttl, lease: Mutex::new(None) }
    }

    /// This agent's lease, renewed (or granted again if it lapsed).
    fn lease(&self) -> Result<i64> {
        let held = *self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = held {
            let v = self.gw.call_blocking("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
            if int(&v["result"]["TTL"]).is_some_and(|t| t > 0) {
                return Ok(id);
            }
        }
        let v = self.gw.call_blocking("/v3/lease/grant", &json!({ "TTL": self.ttl.as_secs().max(1) }))?;
        let id = int(&v["ID"]).ok_or_else(|| Error::Other(format!("etcd granted no lease: {v}")))?;
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        Ok(id)
    }

    /// Publish `node`'s state (JSON text) under this agent's lease.
    pub(crate) fn publish(&self, node: &str, value: &str) -> Result<()> {
        let id = self.lease()?;
        let key = format!("{}{node}", self.dir);
        self.gw
            .call_blocking("/v3/kv/put", &json!({ "key": b64(&key), "value": b64(value), "lease": id.to_string() }))?;
        Ok(())
    }
}

/// Every published member: `(node, JSON text)`, read linearizably.
pub(crate) fn read_members(gw: &Gateway, prefix: &str, cluster: &str) -> Result<Vec<(String, String)>> {
    let dir = dir(prefix, cluster);
    // The range [dir, dir with its last byte + 1) is every key under it.
    let mut end = dir.clone().into_bytes();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let end = String::from_utf8(end).map_err(|e| Error::Other(e.to_string()))?;
    let v = gw.call_blocking("/v3/kv/range", &json!({ "key": b64(&dir), "range_end": b64(&end) }))?;
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    Ok(kvs
        .iter()
        .filter_map(|kv| {
            let key = unb64(kv["key"].as_str()?)?;
            let value = unb64(kv["value"].as_str()?)?;
            Some((key.strip_prefix(&dir)?.to_string(), value))
        })
        .collect())
}
