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
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::config::{Etcd, Secret};
use crate::error::{Error, Result};

/// The most one exchange with one member may take (connect, then each read
/// and write). A member that does not answer within it is skipped.
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// The etcd members of one cluster, and how to reach them.
pub(crate) struct Gateway {
    endpoints: Vec<Endpoint>,
    /// The member that answered last.
    preferred: AtomicUsize,
    /// With `https://` endpoints: verifies etcd's certificate (and presents
    /// ours, if configured).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// etcd's authentication: the user and its password, and the token
    /// etcd gave for them (asked for again when etcd says it expired).
    auth: Option<(String, Secret)>,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<&str> = self.endpoints.iter().map(|e| e.addr.as_str()).collect();
        write!(f, "Gateway({})", hosts.join(", "))
    }
}

/// Run `f`, which waits on the network, without holding up a multi-thread
/// runtime's other tasks: `block_in_place` on a worker thread. Outside a
/// runtime, on a blocking-pool thread or on a current-thread runtime (the
/// unit tests') it just runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One member's client URL, split.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    /// `host:port`, to connect to.
    addr: String,
    /// The host alone: the name its certificate must carry.
    host: String,
}

impl Gateway {
    /// For the members of `[etcd]`, with its TLS and authentication.
    pub(crate) fn new(e: &Etcd) -> Result<Arc<Gateway>> {
        let https = e.endpoints.iter().all(|u| u.starts_with("https://"));
        let tls = if https { Some(connector(e.ca_file.as_deref(), e.client_cert.as_ref())?) } else { None };
        Gateway::with(&e.endpoints, tls, e.auth.clone())
    }

    /// Plain `http://` members, no authentication.
    pub(crate) fn plain(urls: &[String]) -> Result<Arc<Gateway>> {
        Gateway::with(urls, None, None)
    }

    fn with(
        urls: &[String],
        tls: Option<Arc<rustls::ClientConfig>>,
        auth: Option<(String, Secret)>,
    ) -> Result<Arc<Gateway>> {
        let scheme = if tls.is_some() { "https://" } else { "http://" };
        let endpoints = urls
            .iter()
            .map(|u| {
                let addr = u.strip_prefix(scheme).map(|h| h.trim_end_matches('/').to_string()).ok_or_else(|| {
                    Error::Usage(format!("etcd endpoint {u}: every endpoint must start with {scheme}"))
                })?;
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                Ok(Endpoint { addr, host })
            })
            .collect::<Result<Vec<_>>>()?;
        if endpoints.is_empty() {
            return Err(Error::Usage("no etcd endpoint given".into()));
        }
        Ok(Arc::new(Gateway { endpoints, preferred: AtomicUsize::new(0), tls, auth, token: Mutex::new(None) }))
    }

    /// POST `body` to `path` on the first member that answers.
    pub(crate) fn call_blocking(&self, path: &str, body: &Value) -> Result<Value> {
        self.request("POST", path, Some(body))
    }

    /// [`Gateway::call_blocking`] off the async runtime's threads.
    pub(crate) async fn call(self: &Arc<Self>, path: &'static str, body: Value) -> Result<Value> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.call_blocking(path, &body))
            .await
            .map_err(|e| Error::Other(format!("etcd call {path}: {e}")))?
    }

    /// The version of the first member that answers (`GET /version`).
    pub(crate) fn version_blocking(&self) -> Result<String> {
        let v = self.request("GET", "/version", None)?;
        v["etcdserver"].as_str().map(str::to_string).ok_or_else(|| Error::Other(format!("etcd /version: {v}")))
    }

    /// Every call to etcd passes here. The record, the requests and the
    /// members' table are synchronous APIs, and async loops call them (the
    /// HA loops, durability, the API's moves): on a runtime worker the wait
    /// for the network is declared blocking, so the runtime hands that
    /// worker's other tasks to another thread. A slow or blackholed etcd
    /// (up to one timeout per member) then holds up only the task that
    /// asked, never another node's lease renewal or the health API.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        off_the_runtime(|| self.request_now(method, path, body))
    }

    fn request_now(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            match self.authorized(&self.endpoints[at], method, path, body) {
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

    /// One call to one member, with a token when etcd wants one: asked for
    /// on first use, and once more when etcd says it is no longer valid
    /// (simple tokens expire after 5 minutes unused, and on restarts).
    fn authorized(&self, ep: &Endpoint, method: &str, path: &str, body: Option<&Value>) -> Exchange {
        let Some((user, password)) = &self.auth else { return self.exchange(ep, method, path, body, None) };
        for retry in [false, true] {
            let held = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let token = match held {
                Some(t) => t,
                None => {
                    let login = serde_json::json!({ "name": user, "password": password.expose() });
                    let v = self.exchange(ep, "POST", "/v3/auth/authenticate", Some(&login), None).map_err(
                        |f| match f {
                            Answered(e) => Answered(Error::Authentication(format!(
                            "etcd refused user `{user}` ({e}); check [etcd] username and the password in password_file"
                        ))),
                            other => other,
                        },
                    )?;
                    let t = v["token"].as_str().unwrap_or_default().to_string();
                    *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
                    t
                }
            };
            match self.exchange(ep, method, path, body, Some(&token)) {
                Err(Answered(e)) if !retry && e.to_string().contains("auth token") => {
                    *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                r => return r,
            }
        }
        unreachable!("the second try returns")
    }

    fn exchange(&self, ep: &Endpoint, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> Exchange {
        let fail = |e: String| Unreachable(format!("{}: {e}", ep.addr));
        let addr = ep
            .addr
            .to_socket_addrs()
            .map_err(|e| fail(e.to_string()))?
            .next()
            .ok_or_else(|| fail("no address".into()))?;
        let s = TcpStream::connect_timeout(&addr, CALL_TIMEOUT).map_err(|e| fail(e.to_string()))?;
        s.set_read_timeout(Some(CALL_TIMEOUT)).map_err(|e| fail(e.to_string()))?;
        s.set_write_timeout(Some(CALL_TIMEOUT)).map_err(|e| fail(e.to_string()))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = token.map(|t| format!("Authorization: {t}\r\n")).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            ep.addr,
            body.len()
        );
        let raw = match &self.tls {
            None => roundtrip(s, &req),
            Some(c) => {
                let tls = handshake(c, &ep.host, s).map_err(|e| {
                    // A member that does not answer in time is skipped; a
                    // certificate problem is the same on every member.
                    if !e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                        return fail(format!("TLS: {e}"));
                    }
                    Answered(Error::Authentication(format!(
                        "etcd at {}: TLS: {e}; check [etcd] ca_file (and cert_file/key_file if etcd asks for a client certificate)",
                        ep.addr
                    )))
                })?;
                roundtrip(tls, &req)
            }
        }
        .map_err(|e| fail(e.to_string()))?;
        answer(&ep.addr, path, &raw)
    }
}

type Exchange = std::result::Result<Value, Failure>;

/// A client for `https://` endpoints: verifies etcd's certificate against
/// `ca` (or the system's CAs) and the host name, and presents a client
/// certificate if given.
fn connector(ca: Option<&std::path::Path>, client: Option<&(PathBuf, PathBuf)>) -> Result<Arc<rustls::ClientConfig>> {
    let err = |what: String| Error::Other(format!("etcd TLS: {what}"));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
    let roots = match ca {
        Some(ca) => crate::pg::tls::roots(&read(ca)?).map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?,
        None => crate::pg::tls::system_roots(),
    };
    let b = rustls::ClientConfig::builder_with_provider(crate::pg::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let chain =
                crate::pg::tls::certs(&read(cert)?).map_err(|e| err(format!("cert_file {}: {e}", cert.display())))?;
            let k = crate::pg::tls::private_key(&read(key)?)
                .map_err(|e| err(format!("key_file {}: {e}", key.display())))?;
            b.with_client_auth_cert(chain, k).map_err(|e| {
                err(format!(
                    "cert_file {} with key_file {}: {e} (the certificate must be X.509 v3 and match the key)",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Connect over TLS to `host`, the handshake done.
fn handshake(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    mut s: TcpStream,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let name = crate::pg::tls::server_name(host).map_err(invalid)?;
    let mut conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut s)?;
    }
    Ok(rustls::StreamOwned::new(conn, s))
}

/// Send `req` and read the whole answer (the server closes after it).
/// A TLS peer that closes without a close_notify after a complete answer
/// is not an error.
fn roundtrip(mut s: impl Read + Write, req: &str) -> std::io::Result<Vec<u8>> {
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if complete(&raw) => return Ok(raw),
            Err(e) => return Err(e),
        }
    }
}

/// Whether `raw` holds a whole HTTP answer (by Content-Length, or the last
/// chunk).
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    match length {
        Some(n) => body.len() >= n,
        None => body.ends_with("0\r\n\r\n"),
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

/// The JSON of an HTTP answer from `endpoint`, or why not.
fn answer(endpoint: &str, path: &str, raw: &[u8]) -> Exchange {
    let fail = |e: String| Unreachable(format!("{endpoint}: {e}"));
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| fail("a malformed HTTP answer".into()))?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let v: Value = match serde_json::from_str(body.trim()) {
        Ok(v) => v,
        // etcd's own refusals of the gateway come as plain text.
        Err(_) if status.starts_with('4') => Value::String(body.trim().to_string()),
        Err(e) => return Err(fail(format!("{e} in {body:?}"))),
    };
    if status != "200" {
        let mut msg = v.get("error").or(v.get("message")).unwrap_or(&v).to_string();
        if msg.contains("CommonName") {
            msg.push_str(
                "; etcd's JSON gateway refuses a client certificate that carries a CommonName: give [etcd] cert_file a certificate without one (subject O=..., say)",
            );
        }
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
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

pub(crate) fn unb64(s: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok().and_then(|b| String::from_utf8(b).ok())
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

    /// A blackholed etcd (it accepts, then never answers) costs the task
    /// that asked a timeout per member, and only that task: with both of
    /// the runtime's workers inside such calls, other tasks still run.
    #[test]
    fn a_silent_etcd_holds_up_only_the_tasks_that_call_it() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let (accepted_tx, accepted) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let held = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for c in l.incoming().take(2) {
                conns.push(c.unwrap());
                accepted_tx.send(()).unwrap();
            }
            // Kept open, unanswered, until the test has looked.
            let _ = released.recv_timeout(Duration::from_secs(30));
        });
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
        let gw = Gateway::plain(&[url]).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let (gw, done) = (gw.clone(), done.clone());
                // As the sync store APIs are called from async loops.
                rt.spawn(async move {
                    let failed = gw.call_blocking("/v3/kv/range", &serde_json::json!({})).is_err();
                    done.fetch_add(1, Ordering::SeqCst);
                    failed
                })
            })
            .collect();
        // Both workers are inside a call once the listener has both connections.
        for _ in 0..2 {
            accepted.recv_timeout(Duration::from_secs(10)).expect("both calls connect");
        }
        // Another task runs while both calls still wait on etcd.
        let seen = done.clone();
        let finished_before = rt.block_on(rt.spawn(async move { seen.load(Ordering::SeqCst) })).unwrap();
        assert_eq!(finished_before, 0, "a task could run only once a call to a silent etcd had given up");
        release.send(()).unwrap();
        for c in calls {
            assert!(rt.block_on(c).unwrap(), "a silent etcd is an error");
        }
        held.join().unwrap();
    }

    #[test]
    fn gateway_values_decode_as_etcd_writes_them() {
        assert_eq!(unb64(&b64("pg-1")).as_deref(), Some("pg-1"));
        assert_eq!(int(&json!("7587869432")), Some(7587869432));
        assert_eq!(int(&json!(3)), Some(3));
        assert_eq!(int(&Value::Null), None, "a field left out is zero: a lease gone");
        assert_eq!(dechunk("5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"), "{\"a\":1}");
        assert!(Gateway::plain(&["https://x:2379".into()]).is_err());
        let e = Endpoint { addr: "10.0.0.1:2379".into(), host: "10.0.0.1".into() };
        assert_eq!(Gateway::plain(&["http://10.0.0.1:2379/".into()]).unwrap().endpoints, vec![e]);
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
        assert!(version_caveat("3.4.23").is_some_and(|w| w.contains("3.4.31")));
        assert_eq!(version_caveat("3.4.31"), None);
        assert!(version_caveat("3.5.12").is_some());
        assert_eq!(version_caveat("3.5.13"), None);
        assert_eq!(version_caveat("3.6.0"), None);
    }

    #[test]
    fn an_expired_token_is_asked_for_again_once_and_the_password_goes_only_to_authenticate() {
        // A listener that answers like etcd with auth enabled, whose first
        // token expires after one use; it records what each request carried.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (i, s) in l.incoming().take(5).enumerate() {
                let mut s = s.unwrap();
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let (code, body) = match i {
                    0 => ("200 OK", r#"{"token":"t1"}"#),
                    1 => ("200 OK", r#"{"kvs":[]}"#),
                    2 => ("401 Unauthorized", r#"{"error":"etcdserver: invalid auth token","code":16}"#),
                    3 => ("200 OK", r#"{"token":"t2"}"#),
                    _ => ("200 OK", r#"{"count":"0"}"#),
                };
                let _ = write!(s, "HTTP/1.1 {code}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                seen.push(req);
            }
            seen
        });
        let g = Gateway::with(&[format!("http://{addr}")], None, Some(("pgrepl".into(), Secret::new("pw-9".into()))))
            .unwrap();
        assert_eq!(g.call_blocking("/v3/kv/range", &json!({})).unwrap(), json!({"kvs": []}));
        assert_eq!(g.call_blocking("/v3/kv/range", &json!({})).unwrap(), json!({"count": "0"}));
        let seen = seen.join().unwrap();
        let path = |r: &String| r.split_whitespace().nth(1).unwrap_or_default().to_string();
        let paths: Vec<String> = seen.iter().map(path).collect();
        assert_eq!(
            paths,
            ["/v3/auth/authenticate", "/v3/kv/range", "/v3/kv/range", "/v3/auth/authenticate", "/v3/kv/range"]
        );
        assert!(seen[1].contains("Authorization: t1\r\n") && seen[4].contains("Authorization: t2\r\n"), "{seen:?}");
        for (r, p) in seen.iter().zip(&paths) {
            assert_eq!(r.contains("pw-9"), p == "/v3/auth/authenticate", "the password only logs in: {r}");
        }
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
        let g = Gateway::plain(&[format!("http://{dead}"), format!("http://{live_addr}")]).unwrap();
        assert_eq!(g.call_blocking("/v3/kv/range", &json!({})).unwrap(), json!({"ok": true}));
        assert_eq!(g.preferred.load(Ordering::Relaxed), 1, "the member that answered is tried first next time");
        assert_eq!(g.call_blocking("/v3/kv/range", &json!({})).unwrap(), json!({"ok": true}));
    }
}
