//! The leader lease on etcd, through etcd's JSON gateway (`/v3/...` over
//! HTTP, as Patroni uses it): no gRPC stack, one small HTTP/1.1 exchange per
//! call on tokio. It keeps the [`Dcs`] contract:
//! - `acquire` grants a lease and puts the leader key only if the key does
//!   not exist (a transaction comparing its create revision with 0); the
//!   holder's `acquire` renews instead;
//! - `renew` keeps the lease alive and checks the key still names us;
//! - `release` deletes the key only if it names us, and revokes the lease;
//! - reads are linearizable (etcd's default), never a stale member's view.
//!
//! The gateway's quirks: int64 values arrive as JSON strings, keys and
//! values are base64, and fields whose value is zero are left out, so a
//! keepalive answer without `TTL` means the lease is gone.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::store::dcs::{BoxFut, Dcs};

/// The most one call to etcd may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The leader key of one cluster on one etcd endpoint.
pub struct EtcdDcs {
    /// `host:port` of the client URL.
    endpoint: String,
    key: String,
    /// The lease our leader key is attached to, while we hold it.
    lease: Mutex<Option<i64>>,
}

impl EtcdDcs {
    /// `endpoint` is `http://host:port`; the key is `<prefix>/<cluster>/leader`.
    pub fn new(endpoint: &str, prefix: &str, cluster: &str) -> Result<EtcdDcs> {
        let hostport = endpoint.strip_prefix("http://").ok_or_else(|| {
            Error::Usage(format!("etcd endpoint {endpoint}: only http:// endpoints are supported so far"))
        })?;
        Ok(EtcdDcs {
            endpoint: hostport.trim_end_matches('/').to_string(),
            key: format!("{}/{cluster}/leader", prefix.trim_end_matches('/')),
            lease: Mutex::new(None),
        })
    }

    fn held(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_held(&self, id: Option<i64>) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    /// One gateway call: POST the JSON body, the JSON answer back.
    async fn call(&self, path: &str, body: Value) -> Result<Value> {
        let fail = |e: String| Error::Other(format!("etcd at {}: {path}: {e}", self.endpoint));
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(&self.endpoint).await.map_err(|e| fail(e.to_string()))?;
            let body = body.to_string();
            let req = format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.endpoint,
                body.len()
            );
            s.write_all(req.as_bytes()).await.map_err(|e| fail(e.to_string()))?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.map_err(|e| fail(e.to_string()))?;
            Ok::<_, Error>(raw)
        };
        let raw = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {}s", CALL_TIMEOUT.as_secs())))??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| fail("a malformed HTTP answer".into()))?;
        let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
        let body = if chunked { dechunk(body) } else { body.to_string() };
        let status = head.split_whitespace().nth(1).unwrap_or("");
        let v: Value = serde_json::from_str(body.trim()).map_err(|e| fail(format!("{e} in {body:?}")))?;
        if status != "200" {
            return Err(fail(format!("HTTP {status}: {}", v.get("error").or(v.get("message")).unwrap_or(&v))));
        }
        Ok(v)
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
        let v = self.call("/v3/kv/range", json!({ "key": b64(&self.key) })).await?;
        Ok(v["kvs"].get(0).and_then(|kv| kv["value"].as_str()).and_then(unb64))
    }
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

fn b64(s: &str) -> String {
    openssl::base64::encode_block(s.as_bytes())
}

fn unb64(s: &str) -> Option<String> {
    openssl::base64::decode_block(s).ok().and_then(|b| String::from_utf8(b).ok())
}

/// An int64 as the gateway writes it: a JSON string (or a number).
fn int(v: &Value) -> Option<i64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64())
}

/// The body of a chunked HTTP answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_values_decode_as_etcd_writes_them() {
        assert_eq!(unb64(&b64("pg-1")).as_deref(), Some("pg-1"));
        assert_eq!(int(&json!("7587869432")), Some(7587869432));
        assert_eq!(int(&json!(3)), Some(3));
        assert_eq!(int(&Value::Null), None, "a field left out is zero: a lease gone");
        assert_eq!(dechunk("5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"), "{\"a\":1}");
        assert!(EtcdDcs::new("https://x:2379", "/pgrepl", "c").is_err());
        assert_eq!(EtcdDcs::new("http://10.0.0.1:2379/", "/pgrepl/", "c").unwrap().key, "/pgrepl/c/leader");
    }
}
