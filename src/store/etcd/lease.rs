//! The leader lease on etcd. It keeps the [`Dcs`] contract:
//! - `acquire` grants a lease and puts the leader key only if the key does
//!   not exist (a transaction comparing its create revision with 0); the
//!   holder's `acquire` renews instead;
//! - `renew` keeps the lease alive and checks the key still names us;
//! - `release` deletes the key only if it names us, and revokes the lease;
//! - reads are linearizable (etcd's default), never a stale member's view.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::gateway::{b64, int, unb64, Gateway};
use crate::error::{Error, Result};
use crate::store::dcs::{BoxFut, Dcs};

/// The leader key of one cluster.
pub struct EtcdDcs {
    gw: Arc<Gateway>,
    key: String,
    /// The lease our leader key is attached to, while we hold it.
    lease: Mutex<Option<i64>>,
}

impl EtcdDcs {
    /// `endpoint` is `http://host:port`; the key is `<prefix>/<cluster>/leader`.
    pub fn new(endpoint: &str, prefix: &str, cluster: &str) -> Result<EtcdDcs> {
        Ok(EtcdDcs::on(Gateway::plain(&[endpoint.to_string()])?, prefix, cluster))
    }

    pub(crate) fn on(gw: Arc<Gateway>, prefix: &str, cluster: &str) -> EtcdDcs {
        EtcdDcs { gw, key: leader_key(prefix, cluster), lease: Mutex::new(None) }
    }

    fn held(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_held(&self, id: Option<i64>) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    async fn call(&self, path: &'static str, body: serde_json::Value) -> Result<serde_json::Value> {
        self.gw.call(path, body).await
    }

    async fn grant(&self, ttl: Duration) -> Result<i64> {
        let v = self.call("/v3/lease/grant", json!({ "TTL": ttl.as_secs().max(1) })).await?;
        int(&v["ID"]).ok_or_else(|| Error::Other(format!("etcd granted no lease: {v}")))
    }

    /// Keep `id` alive: false when etcd says it is gone.
    async fn keepalive(&self, id: i64) -> Result<bool> {
        let v = self.call("/v3/lease/keepalive", json!({ "ID": id.to_string() })).await?;
        Ok(int(&v["result"]["TTL"]).is_some_and(|t| t > 0))
    }

    async fn revoke(&self, id: i64) {
        let _ = self.call("/v3/lease/revoke", json!({ "ID": id.to_string() })).await;
    }

    /// The leader key's value, read linearizably.
    async fn holder(&self) -> Result<Option<String>> {
        let (gw, key) = (self.gw.clone(), self.key.clone());
        tokio::task::spawn_blocking(move || holder(&gw, &key))
            .await
            .map_err(|e| Error::Other(format!("reading the leader key: {e}")))?
    }
}

/// `<prefix>/<cluster>/leader`.
pub(crate) fn leader_key(prefix: &str, cluster: &str) -> String {
    format!("{}/{cluster}/leader", prefix.trim_end_matches('/'))
}

fn holder(gw: &Gateway, key: &str) -> Result<Option<String>> {
    let v = gw.call_blocking("/v3/kv/range", &json!({ "key": b64(key) }))?;
    Ok(v["kvs"].get(0).and_then(|kv| kv["value"].as_str()).and_then(unb64))
}

/// Who holds the leader lease of `cluster`, read linearizably (for callers
/// outside the async runtime's loops, such as the start gate).
pub(crate) fn leader_blocking(gw: &Gateway, prefix: &str, cluster: &str) -> Result<Option<String>> {
    holder(gw, &leader_key(prefix, cluster))
}

/// How many seconds the lease under `key` has left (None: no key, or a
/// key without a lease).
pub(crate) fn lease_left(gw: &Gateway, key: &str) -> Result<Option<i64>> {
    let v = gw.call_blocking("/v3/kv/range", &json!({ "key": b64(key) }))?;
    let Some(id) = v["kvs"].get(0).and_then(|kv| int(&kv["lease"])).filter(|id| *id != 0) else { return Ok(None) };
    let t = gw.call_blocking("/v3/lease/timetolive", &json!({ "ID": id.to_string() }))?;
    Ok(int(&t["TTL"]).filter(|s| *s >= 0))
}

impl Dcs for EtcdDcs {
    fn acquire<'a>(&'a self, me: &'a str, ttl: Duration) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move {
            if self.held().is_some() && self.renew(me, ttl).await? {
                return Ok(true);
            }
            let id = self.grant(ttl).await?;
            let txn = json!({
                "compare": [{ "key": b64(&self.key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                "success": [{ "request_put": { "key": b64(&self.key), "value": b64(me), "lease": id.to_string() } }],
            });
            let took = self.call("/v3/kv/txn", txn).await?["succeeded"].as_bool() == Some(true);
            if took {
                self.set_held(Some(id));
            } else {
                self.revoke(id).await;
            }
            Ok(took)
        })
    }

    fn renew<'a>(&'a self, me: &'a str, _ttl: Duration) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move {
            let Some(id) = self.held() else { return Ok(false) };
            if self.keepalive(id).await? && self.holder().await?.as_deref() == Some(me) {
                return Ok(true);
            }
            self.set_held(None);
            Ok(false)
        })
    }

    fn release<'a>(&'a self, me: &'a str) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            let txn = json!({
                "compare": [{ "key": b64(&self.key), "target": "VALUE", "result": "EQUAL", "value": b64(me) }],
                "success": [{ "request_delete_range": { "key": b64(&self.key) } }],
            });
            self.call("/v3/kv/txn", txn).await?;
            if let Some(id) = self.held() {
                self.revoke(id).await;
                self.set_held(None);
            }
            Ok(())
        })
    }

    fn leader(&self) -> BoxFut<'_, Result<Option<String>>> {
        Box::pin(self.holder())
    }
}
