//! The HTTP API's write endpoints and limits, driven with curl as an
//! automation script would: the token, TLS with the cluster's CA, client
//! certificates, bad requests that change nothing, and clients that open
//! connections and never send a request.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{http_get, text, wait_until, Cluster};

const T: Duration = Duration::from_secs(60);
const TOKEN: &str = "api-token-for-tests-5f0c2b8e9a7d41e3b6c0";
const WITH_TOKEN: &str = "\n[api]\ntoken_file = \"secrets/api.token\"\n";

/// A cluster whose API takes `TOKEN`, with curl header files for it and
/// for a wrong one (headers from a file keep the token out of argv).
fn with_token(replicas: usize, extra: &str) -> Cluster {
    let c = Cluster::with_extra(replicas, &format!("{WITH_TOKEN}{extra}"));
    c.write("secrets/api.token", &format!("{TOKEN}\n"));
    std::fs::set_permissions(c.path("secrets/api.token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    c.write("secrets/api.header", &format!("Authorization: Bearer {TOKEN}\n"));
    c.write("secrets/wrong.header", "Authorization: Bearer not-the-token\n");
    c
}

/// `curl -s ARGS URL`: (HTTP status, JSON body); status 0 when curl
/// itself failed (connection refused, TLS refused), with curl's exit code
/// in the body.
fn curl(args: &[&str], url: &str) -> (u16, serde_json::Value) {
    let o = Command::new("curl")
        .args(["-s", "-S", "--max-time", "120", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (scripts/install-deps.sh --test installs it)");
    let out = text(&o.stdout);
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    if !o.status.success() {
        return (0, serde_json::json!({"curl_exit": o.status.code(), "stderr": text(&o.stderr)}));
    }
    (code.parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into())))
}

/// `POST path` with `body` on 127.0.0.1:port, with the headers in `header_file`.
fn post(c: &Cluster, port: u16, path: &str, body: &str, header_file: Option<&str>) -> (u16, serde_json::Value) {
    let h = header_file.map(|f| format!("@{}", c.path(f).display()));
    let mut args = vec!["-X", "POST", "--data-binary", body];
    if let Some(h) = &h {
        args.extend(["-H", h.as_str()]);
    }
    curl(&args, &format!("http://127.0.0.1:{port}{path}"))
}

fn steps(v: &serde_json::Value) -> String {
    v["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[test]
fn the_write_api_moves_the_primary_with_the_token_and_refuses_everything_else_unchanged() {
    let c = with_token(1, "");
    c.up();
    let (api1, api2) = (c.ports[0] + 10000, c.ports[1] + 10000);
    wait_until("pg-2 streams", T, || c.streaming("pg-2"));
    let auth = Some("secrets/api.header");

    // Refused, each with its reason, before anything changes.
    let (code, v) = post(&c, api1, "/switchover", r#"{"to": "pg-2"}"#, None);
    assert_eq!(code, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Authorization: Bearer"), "{v}");
    assert_eq!(post(&c, api1, "/switchover", r#"{"to": "pg-2"}"#, Some("secrets/wrong.header")).0, 401);
    let (code, v) = post(&c, api1, "/switchover", r#"{"to": "#, auth);
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cannot read the JSON body"), "{v}");
    let (code, v) = post(&c, api1, "/switchover", r#"{"to": "pg-2", "force": true}"#, auth);
    assert!(code == 400 && v["error"].as_str().unwrap().contains("unknown field `force`"), "{code} {v}");
    let (code, v) = post(&c, api1, "/switchover", r#"{"to": "pg-9"}"#, auth);
    assert!(code == 400 && v["error"].as_str().unwrap().contains("no node named `pg-9`"), "{code} {v}");
    let (code, v) = post(&c, api1, "/switchover", r#"{"leader": "pg-2", "candidate": "pg-1"}"#, auth);
    assert!(code == 400 && v["error"].as_str().unwrap().contains("pg-2 is not the primary, pg-1 is"), "{code} {v}");
    let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(post(&c, api1, "/pause", &big, auth).0, 413, "a body over 64 kB");
    let long_header = format!("X-Filler: {}", "y".repeat(10 * 1024));
    let (code, _) = curl(&["-X", "POST", "-H", &long_header], &format!("http://127.0.0.1:{api1}/pause"));
    assert_eq!(code, 431, "headers over 8 kB");
    assert_eq!(c.nodes_writable(), ["pg-1"], "a refused request changed something");
    assert!(c.status()["paused"].is_null());

    // The move, on the same path as the CLI, with its steps in the answer.
    let (code, v) = post(&c, api1, "/switchover", r#"{"to": "pg-2"}"#, auth);
    assert_eq!(code, 200, "{v}\n{}", c.supervisor_log());
    assert_eq!(v["ok"], true);
    assert!(steps(&v).contains("pg-2"), "{v}");
    assert_eq!(c.nodes_writable(), ["pg-2"]);
    wait_until("pg-1 streams from pg-2", T, || c.streaming("pg-1"));
    let history = c.ok(&["history"]);
    assert!(history.contains("switchover") && history.contains("pg-2"), "{history}");

    // Pause and resume, restart (of the node whose port is called), reload.
    let (code, v) = post(&c, api2, "/pause", r#"{"reason": "api test"}"#, auth);
    assert_eq!(code, 200, "{v}");
    assert!(c.status()["paused"].as_str().unwrap().contains("api test"));
    assert_eq!(post(&c, api2, "/resume", "", auth).0, 200);
    assert!(c.status()["paused"].is_null());
    let before = c.postmaster_pid("pg-1");
    let (code, v) = post(&c, api1, "/restart", "", auth);
    assert_eq!(code, 200, "{v}");
    assert_ne!(c.postmaster_pid("pg-1"), before, "pg-1 restarted: {v}");
    assert!(c.streaming("pg-1"), "a restarted replica streams again before the answer");
    let (code, v) = post(&c, api2, "/reload", "{}", auth);
    assert!(code == 200 && steps(&v).contains("pg-2: reloaded"), "{code} {v}");

    // Refusals are logged with the peer; the token never is.
    let log = c.supervisor_log();
    assert!(log.contains("API refused POST /switchover from 127.0.0.1"), "{log}");
    let all = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    assert!(!all.contains(TOKEN) && !all.contains("not-the-token"), "a token in the log");
}

#[test]
fn the_api_over_tls_answers_curl_with_the_ca_and_takes_a_client_certificate_for_writes() {
    let c = with_token(0, &format!("tls = true\n{}", Cluster::tls_section("ca.crt")));
    c.make_certs(&["IP:127.0.0.1", "DNS:localhost"], Some("other"));
    c.sign("ca", "client", "/CN=automation", None);
    c.sign("other", "stranger", "/CN=automation", None);
    c.up();
    let api = c.ports[0] + 10000;
    let url = |path: &str| format!("https://127.0.0.1:{api}{path}");
    let ca = c.path("certs/ca.crt").display().to_string();
    wait_until("health over https", T, || curl(&["--cacert", &ca], &url("/health")).0 == 200);
    assert_eq!(curl(&["--cacert", &ca], &url("/primary")).0, 200);
    let (code, v) = curl(&[], &url("/health"));
    assert_eq!((code, v["curl_exit"].as_i64()), (0, Some(60)), "without the CA curl cannot verify: {v}");
    assert_eq!(http_get(api, "/health").map(|r| r.0), None, "plain HTTP is not served on an https port");

    let header = format!("@{}", c.path("secrets/api.header").display());
    let (code, v) = curl(&["--cacert", &ca, "-X", "POST", "-H", &header, "-d", "{}"], &url("/pause"));
    assert_eq!(code, 200, "{v}");
    assert!(c.status()["paused"].is_string());
    // A certificate from the cluster's CA stands in for the token...
    let cert = |n: &str| {
        (
            c.path(&format!("certs/{n}.crt")).display().to_string(),
            c.path(&format!("certs/{n}.key")).display().to_string(),
        )
    };
    let (crt, key) = cert("client");
    let (code, v) = curl(&["--cacert", &ca, "--cert", &crt, "--key", &key, "-X", "POST"], &url("/resume"));
    assert_eq!(code, 200, "{v}");
    assert!(c.status()["paused"].is_null());
    // ...one from another CA does not get through the handshake.
    let (crt, key) = cert("stranger");
    let (code, _) = curl(&["--cacert", &ca, "--cert", &crt, "--key", &key, "-X", "POST"], &url("/pause"));
    assert_eq!(code, 0, "a stranger's certificate was accepted");
    assert!(c.status()["paused"].is_null());

    // HAProxy checks the primary over HTTPS (`check-ssl`, verifying the CA)
    // and lets clients through to it.
    let rw = crate::harness::free_port();
    let cfg = format!(
        "global\n    maxconn 50\ndefaults\n    mode tcp\n    timeout connect 3s\n    timeout client 30s\n    timeout server 30s\n    timeout check 2s\nlisten rw\n    bind 127.0.0.1:{rw}\n    option httpchk GET /primary\n    http-check expect status 200\n    default-server inter 500ms fall 2 rise 1\n    server pg-1 127.0.0.1:{} check port {api} check-ssl verify required ca-file {ca}\n",
        c.ports[0]
    );
    let _haproxy = c.haproxy(&cfg);
    let psql = pgrepl::find_postgres(None).unwrap().program("psql");
    let through_haproxy = || {
        let o = Command::new(&psql)
            .args(["-X", "-tAc", "SELECT pg_is_in_recovery()"])
            .arg(format!("host=127.0.0.1 port={rw} user=replicator dbname=postgres sslmode=require connect_timeout=3"))
            .env("PGPASSWORD", crate::harness::PASSWORD)
            .output()
            .unwrap();
        text(&o.stdout).trim().to_string()
    };
    wait_until("HAProxy's HTTPS check passes and it reaches the primary", T, || through_haproxy() == "f");
}

#[test]
fn idle_connections_cannot_starve_the_health_checks_and_writes_are_off_without_a_token_file() {
    let c = Cluster::new(0);
    c.up();
    let api = c.ports[0] + 10000;
    wait_until("health answers", T, || http_get(api, "/health").is_some_and(|(code, _)| code == 200));
    let (code, v) = post(&c, api, "/pause", "{}", None);
    assert!(code == 403 && v["error"].as_str().unwrap().contains("[api] token_file"), "{code} {v}");
    assert!(c.status()["paused"].is_null());

    // 1,000 connections that never finish a request: half send nothing,
    // half the start of a request line.
    let idle: Vec<std::net::TcpStream> = (0..1000)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).expect("connect");
            if i % 2 == 1 {
                std::io::Write::write_all(&mut s, b"GET /health HT").unwrap();
            }
            s
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let r = http_get(api, "/health");
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.map(|r| r.0), Some(200));
    }
    assert!(slowest < Duration::from_millis(100), "a health check took {slowest:?} beside 1,000 idle connections");
    // The oldest idle connections were shed to make room: closed at once,
    // not when their 5 s to send a request run out.
    let mut first = &idle[0];
    first.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(first.read(&mut buf), Ok(0)), "the longest-idle connection is closed");
}
