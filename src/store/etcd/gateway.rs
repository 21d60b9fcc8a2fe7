//! etcd's JSON gateway (`/v3/...` over HTTP, as Patroni uses it): one small
//! HTTP/1.1 exchange per call, no gRPC stack. The exchange is blocking
//! (std::net, with timeouts) so the synchronous record store can use it;
//! async callers run it on tokio's blocking pool.
//!
//! Endpoints are tried in order, starting with the last one that answered,
//! so one dead member costs one timeout once, not on every call.
//!
//! The gateway's quirks: int64 values arrive as JSON strings, keys and
//! values are base64, and fields whose value is zero are left out, so a
//! keepalive answer without `TTL` means the lease is gone.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// The most one exchange with one member may take (connect, then each read
/// and write). A member that does not answer within it is skipped.
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// The etcd members of one cluster.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// `host:port` of each client URL.
    endpoints: Vec<String>,
    /// The member that answered last.
    preferred: AtomicUsize,
}

impl Gateway {
    /// From client URLs `http://host:port`.
    pub(crate) fn new(urls: &[String]) -> Result<Arc<Gateway>> {
        let endpoints = urls
            .iter()
            .map(|u| {
                u.strip_prefix("http://").map(|h| h.trim_end_matches('/').to_string()).ok_or_else(|| {
                    Error::Usage(format!("etcd endpoint {u}: only http:// endpoints are supported so far"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if endpoints.is_empty() {
            return Err(Error::Usage("no etcd endpoint given".into()));
        }
        Ok(Arc::new(Gateway { endpoints, preferred: AtomicUsize::new(0) }))
    }

    /// POST `body` to `path` on the first member that answers.
    pub(crate) fn call_blocking(&self, path: &str, body: &Value) -> Result<Value> {
        self.request("POST", path, Some(body))
    }

    /// The version of the first member that answers (`GET /version`).
    pub(crate) fn version_blocking(&self) -> Result<String> {
        let v = self.request("GET", "/version", None)?;
        v["etcdserver"].as_str().map(str::to_string).ok_or_else(|| Error::Other(format!("etcd /version: {v}")))
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            match exchange(&self.endpoints[at], method, path, body) {
                Ok(v) => {
                    self.preferred.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                // etcd answered with an error: another member would too.
                Err(Answered(e)) => return Err(e),
                Err(Unreachable(e)) => errors.push(e),
            }
        }
        Err(Error::Other(format!("etcd unreachable: {}", errors.join("; "))))
    }

    /// [`Gateway::call_blocking`] off the async runtime's threads.
    pub(crate) async fn call(self: &Arc<Self>, path: &'static str, body: Value) -> Result<Value> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.call_blocking(path, &body))
            .await
            .map_err(|e| Error::Other(format!("etcd call {path}: {e}")))?
    }
}

/// Why one exchange failed.
enum Failure {
    /// No usable answer from this member: try the next.
    Unreachable(String),
    /// The member answered with an error.
    Answered(Error),
}
use Failure::{Answered, Unreachable};

fn exchange(endpoint: &str, method: &str, path: &str, body: Option<&Value>) -> std::result::Result<Value, Failure> {
    let fail = |e: String| Unreachable(format!("{endpoint}: {e}"));
    let addr =
        endpoint.to_socket_addrs().map_err(|e| fail(e.to_string()))?.next().ok_or_else(|| fail("no address".into()))?;
    let mut s = TcpStream::connect_timeout(&addr, CALL_TIMEOUT).map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(CALL_TIMEOUT)).map_err(|e| fail(e.to_string()))?;
    s.set_write_timeout(Some(CALL_TIMEOUT)).map_err(|e| fail(e.to_string()))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| fail("a malformed HTTP answer".into()))?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| fail(format!("{e} in {body:?}")))?;
    if status != "200" {
        let msg = v.get("error").or(v.get("message")).unwrap_or(&v).to_string();
        // A member cut off from its quorum answers, but cannot serve.
        if status.starts_with('5') {
            return Err(fail(format!("{path}: HTTP {status}: {msg}")));
        }
        return Err(Answered(Error::Other(format!("etcd at {endpoint}: {path}: HTTP {status}: {msg}"))));
    }
    Ok(v)
}

/// Why a version of etcd needs care, if it does: before 3.4.31 and 3.5.13,
/// a lease could be revoked early after an etcd leader change (etcd issue
/// 15247), so a lease alone could let two nodes lead for a moment.
pub(crate) fn version_caveat(version: &str) -> Option<String> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next()?, parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let fixed = match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m >= 6,
        (m, _) => m > 3,
    };
    (!fixed).then(|| {
        format!(
            "etcd {version} may revoke a lease early after an etcd leader change (fixed in 3.4.31 and 3.5.13); pgrepl's direct probe of the old primary before a promotion is the backstop. Upgrade etcd when you can"
        )
    })
}

pub(crate) fn b64(s: &str) -> String {
    openssl::base64::encode_block(s.as_bytes())
}

pub(crate) fn unb64(s: &str) -> Option<String> {
    openssl::base64::decode_block(s).ok().and_then(|b| String::from_utf8(b).ok())
}

/// An int64 as the gateway writes it: a JSON string (or a number).
pub(crate) fn int(v: &Value) -> Option<i64> {
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
    use serde_json::json;

    #[test]
    fn gateway_values_decode_as_etcd_writes_them() {
        assert_eq!(unb64(&b64("pg-1")).as_deref(), Some("pg-1"));
        assert_eq!(int(&json!("7587869432")), Some(7587869432));
        assert_eq!(int(&json!(3)), Some(3));
        assert_eq!(int(&Value::Null), None, "a field left out is zero: a lease gone");
        assert_eq!(dechunk("5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"), "{\"a\":1}");
        assert!(Gateway::new(&["https://x:2379".into()]).is_err());
        assert_eq!(Gateway::new(&["http://10.0.0.1:2379/".into()]).unwrap().endpoints, vec!["10.0.0.1:2379"]);
        assert!(version_caveat("3.4.23").is_some_and(|w| w.contains("3.4.31")));
        assert_eq!(version_caveat("3.4.31"), None);
        assert!(version_caveat("3.5.12").is_some());
        assert_eq!(version_caveat("3.5.13"), None);
        assert_eq!(version_caveat("3.6.0"), None);
    }

    #[test]
    fn a_dead_member_is_skipped_and_the_one_that_answered_is_tried_first() {
        // A listener that answers like etcd, and a port where nothing listens.
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let live_addr = live.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in live.incoming().take(2) {
                let mut s = s.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let body = "{\"ok\":true}";
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        });
        let g = Gateway::new(&[format!("http://{dead}"), format!("http://{live_addr}")]).unwrap();
        assert_eq!(g.call_blocking("/v3/kv/range", &json!({})).unwrap(), json!({"ok": true}));
        assert_eq!(g.preferred.load(Ordering::Relaxed), 1, "the member that answered is tried first next time");
        assert_eq!(g.call_blocking("/v3/kv/range", &json!({})).unwrap(), json!({"ok": true}));
    }
}
