//! The leader lease on a real etcd (Debian's `etcd-server`), through its
//! JSON gateway: the store contract the HA loop relies on, with lease
//! expiry on etcd's own clock.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pgrepl::{Dcs, EtcdDcs};

use serde_json::json;

use crate::harness::{free_port, http_get, text, wait_until, Cluster};

/// One etcd member on loopback, in a temp dir, stopped on drop.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let (curl, purl) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &curl, "--advertise-client-urls", &curl])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &format!("t={purl}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; bash scripts/install-deps.sh --test installs it)");
        let e = Etcd { child, url: curl, _dir: dir };
        wait_until("etcd answers /health", Duration::from_secs(30), || {
            http_get(client, "/health").is_some_and(|(code, body)| code == 200 && body.contains("true"))
        });
        e
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_leader_lease_on_etcd_is_create_if_absent_renewed_by_its_holder_and_expires_on_its_own() {
    let etcd = Etcd::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (a, b) = (EtcdDcs::new(&etcd.url, "/pgrepl", "c").unwrap(), EtcdDcs::new(&etcd.url, "/pgrepl", "c").unwrap());
    let ttl = Duration::from_secs(2);
    rt.block_on(async {
        assert!(a.acquire("pg-1", ttl).await.unwrap());
        assert!(!b.acquire("pg-2", ttl).await.unwrap(), "a live lease blocks others");
        assert_eq!(b.leader().await.unwrap().as_deref(), Some("pg-1"));
        assert!(a.acquire("pg-1", ttl).await.unwrap(), "the holder renews");
        assert!(!b.renew("pg-2", ttl).await.unwrap(), "only the holder renews");
    });
    // pg-1 stops renewing: etcd revokes its lease by itself.
    wait_until("pg-1's lease expires", Duration::from_secs(10), || rt.block_on(b.leader()).unwrap().is_none());
    rt.block_on(async {
        assert!(b.acquire("pg-2", ttl).await.unwrap(), "a free lease is taken");
        assert!(!a.renew("pg-1", ttl).await.unwrap(), "a lost lease cannot be renewed: demote");
        a.release("pg-1").await.unwrap();
        assert_eq!(a.leader().await.unwrap().as_deref(), Some("pg-2"), "release deletes only our own key");
        b.release("pg-2").await.unwrap();
        assert_eq!(a.leader().await.unwrap(), None);
    });
}

/// An etcd member on loopback that serves clients over TLS with client
/// certificates and users (`auth enable`), set up through a second, plain
/// listener on loopback that only the test uses.
struct SecureEtcd {
    child: Child,
    https: String,
    /// The plain listener's port.
    http: u16,
    _dir: tempfile::TempDir,
}

impl SecureEtcd {
    /// With `c`'s `certs/` (from `make_certs`) and user `pgrepl` whose
    /// password is `password`, allowed only the keys under `/pgrepl/`.
    fn start(c: &Cluster, password: &str) -> SecureEtcd {
        let dir = tempfile::tempdir().unwrap();
        let (https, http, peer) = (free_port(), free_port(), free_port());
        let urls = format!("https://127.0.0.1:{https},http://127.0.0.1:{http}");
        let purl = format!("http://127.0.0.1:{peer}");
        let certs = c.path("certs");
        let child = Command::new("etcd")
            .args(["--name", "s", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &urls, "--advertise-client-urls", &urls])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &format!("s={purl}")])
            .arg("--cert-file")
            .arg(certs.join("server.crt"))
            .arg("--key-file")
            .arg(certs.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(certs.join("ca.crt"))
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; bash scripts/install-deps.sh --test installs it)");
        let e = SecureEtcd { child, https: format!("https://127.0.0.1:{https}"), http, _dir: dir };
        wait_until("etcd answers /health", Duration::from_secs(30), || {
            http_get(http, "/health").is_some_and(|(code, body)| code == 200 && body.contains("true"))
        });
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s.as_bytes());
        for (path, body) in [
            ("/v3/auth/user/add", json!({"name": "root", "password": "root-pw"})),
            ("/v3/auth/role/add", json!({"name": "root"})),
            ("/v3/auth/user/grant", json!({"user": "root", "role": "root"})),
            ("/v3/auth/user/add", json!({"name": "pgrepl", "password": password})),
            ("/v3/auth/role/add", json!({"name": "pgrepl"})),
            (
                "/v3/auth/role/grant",
                json!({"name": "pgrepl", "perm": {"permType": "READWRITE", "key": b64("/pgrepl/"), "range_end": b64("/pgrepl0")}}),
            ),
            ("/v3/auth/user/grant", json!({"user": "pgrepl", "role": "pgrepl"})),
            ("/v3/auth/enable", json!({})),
        ] {
            let (code, answer) = http_post(http, path, &body, None);
            assert_eq!(code, 200, "{path}: {answer}");
        }
        e
    }

    /// Every key under `prefix` with its value, read as root.
    fn dump(&self, prefix: &str) -> String {
        let (_, login) =
            http_post(self.http, "/v3/auth/authenticate", &json!({"name": "root", "password": "root-pw"}), None);
        let token = login["token"].as_str().expect("a token").to_string();
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s.as_bytes());
        let unb64 = |v: &serde_json::Value| {
            String::from_utf8(
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.as_str().unwrap_or_default())
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
        };
        let end = format!("{}0", prefix.trim_end_matches('/'));
        let (code, v) =
            http_post(self.http, "/v3/kv/range", &json!({"key": b64(prefix), "range_end": b64(&end)}), Some(&token));
        assert_eq!(code, 200, "{v}");
        let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
        kvs.iter().map(|kv| format!("{} = {}\n", unb64(&kv["key"]), unb64(&kv["value"]))).collect()
    }
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST JSON to etcd's plain listener on loopback: (status, JSON answer).
fn http_post(port: u16, path: &str, body: &serde_json::Value, token: Option<&str>) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("etcd's plain listener");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = body.to_string();
    let auth = token.map(|t| format!("Authorization: {t}\r\n")).unwrap_or_default();
    write!(s, "POST {path} HTTP/1.0\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let answer = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (code, serde_json::from_str(answer).unwrap_or_default())
}

/// A temp dir with certificates (a CA, a second unrelated one, and a
/// certificate for 127.0.0.1 that serves etcd and the agent alike) and
/// the etcd password file.
fn secure_cluster() -> Cluster {
    let c = Cluster::empty();
    c.make_certs(&["IP:127.0.0.1"], Some("other"));
    // The agent's client certificate: etcd's JSON gateway refuses one that
    // carries a CommonName.
    c.sign("ca", "client", "/O=pgrepl agents", None);
    std::fs::set_permissions(c.path("certs/client.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    c.write("secrets/etcd.password", "etcd-Secret-4u\n");
    std::fs::set_permissions(c.path("secrets/etcd.password"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    c
}

#[test]
fn agents_reach_etcd_over_verified_tls_with_a_client_certificate_and_a_password_that_never_reaches_etcd() {
    let c = secure_cluster();
    let etcd = SecureEtcd::start(&c, "etcd-Secret-4u");
    let section = |ca: &str| {
        format!(
            "\n[failover]\nprimary_start_timeout = \"3s\"\n\n[etcd]\nendpoints = [\"{}\"]\nca_file = \"certs/{ca}\"\ncert_file = \"certs/client.crt\"\nkey_file = \"certs/client.key\"\nusername = \"pgrepl\"\npassword_file = \"secrets/etcd.password\"\n",
            etcd.https
        )
    };
    let ports = [free_port(), free_port()];
    let config = |ca: &str| {
        format!(
            "[cluster]\nname = \"sec\"\ndata_root = \"data\"\n\n[replication]\npassword_file = \"secrets/replicator.password\"\nclone_timeout = \"20s\"\n\n[[node]]\nname = \"pg-1\"\nport = {}\n\n[[node]]\nname = \"pg-2\"\nport = {}\n\n[postgresql]\nshared_buffers = \"16MB\"\nmax_connections = 30\n{}",
            ports[0],
            ports[1],
            section(ca)
        )
    };

    // An untrusted CA: refused before anything starts, naming the fix.
    c.write("pgrepl.toml", &config("other.crt"));
    let o = c.pgrepl(&["up", "--detach"]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("check [etcd] ca_file"), "{}", text(&o.stderr));
    assert!(!c.data_dir("pg-1").exists(), "nothing was created");

    // A wrong password: refused, naming the user and where the password is.
    c.write("pgrepl.toml", &config("ca.crt"));
    c.write("secrets/etcd.password", "not-the-password\n");
    let o = c.pgrepl(&["up", "--detach"]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("etcd refused user `pgrepl`"), "{}", text(&o.stderr));

    // The right ones: the cluster comes up with its keys in etcd.
    c.write("secrets/etcd.password", "etcd-Secret-4u\n");
    c.up();
    wait_until("pg-2 streams", Duration::from_secs(60), || {
        c.status()["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["name"] == "pg-2" && n["replication"]["state"] == "streaming"))
    });
    let dump = etcd.dump("/pgrepl/");
    assert!(dump.contains("/pgrepl/sec/leader = pg-1"), "{dump}");
    for secret in ["etcd-Secret-4u", crate::harness::PASSWORD] {
        assert!(!dump.contains(secret), "a password is in etcd:\n{dump}");
    }
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap_or_default();
    assert!(!log.contains("etcd-Secret-4u"), "the etcd password is in the log");
    c.ok(&["down"]);
}
