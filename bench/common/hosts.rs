//! The two multi-host clusters the HA benchmarks compare, each on the
//! namespace harness of the tests (three hosts on a bridge, a 3-member etcd
//! in namespaces of its own): pgrepl, an agent per host; and Patroni 4.x, a
//! member per host, installed with pip into `target/patroni-venv`. Needs
//! root. Used by the `ha` and `moves` benchmarks, which declare the
//! `netns` and `writer` modules this one uses.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{tempdir, wait};
use crate::netns::{Lan, PORT};
use crate::writer::Writer;

/// pgrepl on three hosts: pg-<i> on host i, primary pg-1, table `w` ready.
pub struct PgreplSite {
    pub lan: Lan,
    pub dir: tempfile::TempDir,
}

impl PgreplSite {
    pub fn start() -> PgreplSite {
        let dir = tempdir();
        let mut lan = Lan::new(3, dir.path()).expect("hosts");
        let etcd = lan.start_etcd(3);
        // The write API on, for the switchover through POST /switchover.
        lan.write_pgrepl_configs(dir.path(), &etcd, "async", "\n[api]\ntoken_file = \"api.token\"\n");
        let token = "bench-api-token-0123456789abcdef0123456789";
        std::fs::write(dir.path().join("api.token"), format!("{token}\n")).expect("token");
        std::fs::set_permissions(dir.path().join("api.token"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        std::fs::write(dir.path().join("api.header"), format!("Authorization: Bearer {token}\n")).expect("header");
        let site = PgreplSite { lan, dir };
        site.pgrepl(1, &["up", "--detach"]);
        std::thread::scope(|s| {
            s.spawn(|| site.pgrepl(2, &["up", "--detach"]));
            s.spawn(|| site.pgrepl(3, &["up", "--detach"]));
        });
        site.wait_streaming(1);
        let sql = "CREATE TABLE w (id bigint PRIMARY KEY); ALTER TABLE w OWNER TO app";
        site.pgrepl(1, &["psql", "pg-1", "--", "-X", "-d", "app", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        site
    }

    /// Wait until host `i` sees both replicas streaming.
    pub fn wait_streaming(&self, i: usize) {
        wait(Duration::from_secs(60), || {
            let st: serde_json::Value =
                serde_json::from_str(&self.pgrepl(i, &["status", "--json"])).unwrap_or_default();
            let nodes = st["nodes"].as_array().cloned().unwrap_or_default();
            nodes.iter().filter(|n| n["replication"]["state"] == "streaming").count() == 2
        });
    }

    /// `POST path` with `body` to the API of host `i`'s agent, with the
    /// token: the answer, which must say ok.
    pub fn post(&self, i: usize, path: &str, body: &str) -> serde_json::Value {
        let header = format!("@{}", self.dir.path().join("api.header").display());
        let o = self
            .lan
            .exec(i, "curl")
            .args(["-s", "-X", "POST", "-H", &header, "--data-binary", body])
            .arg(format!("http://127.0.0.1:8008{path}"))
            .output()
            .expect("curl");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        assert_eq!(v["ok"], true, "host {i}: POST {path}: {}", String::from_utf8_lossy(&o.stdout));
        v
    }

    /// `pgrepl ARGS` on host `i`, which must succeed: its output.
    pub fn pgrepl(&self, i: usize, args: &[&str]) -> String {
        let o = self
            .lan
            .exec(i, env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(self.dir.path().join(format!("host{i}.toml")))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("pgrepl");
        assert!(o.status.success(), "host {i}: {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// A writer through every host, with a 1 s client timeout.
    pub fn writer(&self) -> Writer {
        Writer::start_at(&addrs(&self.lan), Some(Duration::from_secs(1)))
    }

    /// The ids in `w` on the node of the host at `addr`.
    pub fn ids(&self, addr: &str) -> Vec<i64> {
        let i = host_of(&self.lan, addr);
        let node = format!("pg-{i}");
        self.pgrepl(i, &["psql", &node, "--", "-X", "-d", "app", "-tAc", "SELECT id FROM w"])
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// Patroni on three hosts: member p<i> on host i, table `w` on the leader.
pub struct PatroniSite {
    lan: Option<Lan>,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SUPER: &str = "bench-super-secret";

impl PatroniSite {
    pub fn start(patroni: &Path, ttl: u32, loop_wait: u32, retry: u32) -> PatroniSite {
        let dir = tempdir();
        let mut lan = Lan::new(3, dir.path()).expect("hosts");
        let etcd = lan.start_etcd(3);
        let etcd_hosts: Vec<String> = etcd.iter().map(|u| format!("\"{}\"", u.trim_start_matches("http://"))).collect();
        let net = lan.gateway.rsplit_once('.').map(|(a, _)| a.to_string()).unwrap_or_default();
        let mut children = Vec::new();
        for (i, h) in lan.hosts.iter().enumerate() {
            let n = i + 1;
            let data = dir.path().join(format!("p{n}"));
            let socks = dir.path().join(format!("s{n}"));
            for d in [&socks, &data] {
                std::fs::create_dir_all(d).expect("dir");
                let _ = Command::new("chown").arg("postgres:").arg(d).status();
            }
            std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
            let yml = format!(
                r#"scope: bench
name: p{n}
restapi:
  listen: {a}:8008
  connect_address: {a}:8008
etcd3:
  hosts: [{etcd}]
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry}
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        shared_buffers: 16MB
        max_connections: 30
        wal_log_hints: "on"
  initdb: [{{encoding: UTF8}}]
  pg_hba:
    - local all all trust
    - host replication replicator {net}.0/24 scram-sha-256
    - host all all {net}.0/24 scram-sha-256
postgresql:
  listen: {a}:{PORT}
  connect_address: {a}:{PORT}
  data_dir: {data}
  bin_dir: {PG_BIN}
  authentication:
    superuser: {{username: postgres, password: {SUPER}}}
    replication: {{username: replicator, password: bench-repl-secret}}
    rewind: {{username: rewinder, password: bench-rewind-secret}}
  parameters:
    unix_socket_directories: {socks}
"#,
                a = h.addr,
                etcd = etcd_hosts.join(", "),
                data = data.display(),
                socks = socks.display()
            );
            let cfg = dir.path().join(format!("p{n}.yml"));
            std::fs::write(&cfg, yml).expect("patroni config");
            let log = std::fs::File::create(dir.path().join(format!("p{n}.log"))).expect("log");
            let child = lan
                .exec(n, "runuser")
                .args(["-u", "postgres", "--"])
                .arg(patroni)
                .arg(&cfg)
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("patroni");
            children.push(child);
        }
        let site = PatroniSite { lan: Some(lan), dir, children };
        // One leader and two streaming replicas, as its REST API reports.
        wait_explained(Duration::from_secs(180), || site.errors(), || site.settled().is_some());
        let leader = site.settled().unwrap_or_default();
        site.psql(&leader, "CREATE TABLE w (id bigint PRIMARY KEY)");
        site
    }

    pub fn lan(&self) -> &Lan {
        self.lan.as_ref().expect("lan")
    }

    /// The leader's address once it runs and both replicas stream.
    pub fn settled(&self) -> Option<String> {
        let c = cluster(&self.lan().hosts[0].addr)?;
        let members = c["members"].as_array().cloned().unwrap_or_default();
        let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
        let leader = members.iter().find(|m| m["role"] == "leader" && m["state"] == "running")?;
        (streaming == 2).then(|| leader["host"].as_str().unwrap_or_default().to_string())
    }

    /// The first error lines of each member's log.
    fn errors(&self) -> String {
        (1..=3)
            .map(|n| std::fs::read_to_string(self.dir.path().join(format!("p{n}.log"))).unwrap_or_default())
            .map(|l| {
                let bad = |x: &&str| ["ERROR", "FATAL", "CRITICAL", "rror:"].iter().any(|w| x.contains(w));
                l.lines().filter(bad).take(12).collect::<Vec<_>>().join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// SQL as the superuser on the node at `host`: its output.
    pub fn psql(&self, host: &str, sql: &str) -> String {
        let port = PORT.to_string();
        let o = Command::new(format!("{PG_BIN}/psql"))
            .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", &port, "-U", "postgres", "-c", sql])
            .env("PGPASSWORD", SUPER)
            .output()
            .expect("psql");
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub fn writer(&self) -> Writer {
        let login = format!("user=postgres password={SUPER} dbname=postgres");
        Writer::start_as(&addrs(self.lan()), &login, Some(Duration::from_secs(1)))
    }

    pub fn ids(&self, host: &str) -> Vec<i64> {
        self.psql(host, "SELECT id FROM w").lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// `POST /switchover` to the leader's REST API, as Patroni users do:
    /// the HTTP status and body.
    pub fn switchover(&self, leader_addr: &str, leader: &str, candidate: &str) -> (u16, String) {
        let body = format!("{{\"leader\":\"{leader}\",\"candidate\":\"{candidate}\"}}");
        http(leader_addr, "POST", "/switchover", &body, Duration::from_secs(60)).unwrap_or((0, String::new()))
    }
}

impl Drop for PatroniSite {
    fn drop(&mut self) {
        drop(self.lan.take());
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// Every host's address and the shared port.
pub fn addrs(lan: &Lan) -> Vec<(String, u16)> {
    lan.hosts.iter().map(|h| (h.addr.clone(), PORT)).collect()
}

/// The host number (1-based) of address `addr`.
pub fn host_of(lan: &Lan, addr: &str) -> usize {
    lan.hosts.iter().position(|h| h.addr == addr).expect("host") + 1
}

/// A child of `parent` whose command name is `comm`.
pub fn child_named(parent: i32, comm: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).find(|p| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
        let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        ppid == Some(parent) && name.trim() == comm
    })
}

/// `target/patroni-venv/bin/patroni`, installing it with pip if needed.
pub fn patroni() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/patroni-venv");
    let bin = venv.join("bin/patroni");
    if !bin.exists() {
        let ok = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        // The system Python: the postgres OS user runs patroni, and a
        // pyenv interpreter under /root is out of its reach.
        let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        if !ok(Command::new(python).arg("-m").arg("venv").arg(&venv))
            || !ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "patroni[etcd3]", "psycopg[binary]"]))
        {
            return None;
        }
    }
    // The postgres OS user runs it, and must reach it.
    let _ = Command::new("chmod").args(["-R", "o+rX"]).arg(&venv).status();
    let mut p = venv.clone();
    while let Some(parent) = p.parent() {
        let _ = Command::new("chmod").arg("o+x").arg(parent).status();
        p = parent.to_path_buf();
    }
    bin.exists().then_some(bin)
}

/// [`wait`], printing `explain()` if it times out.
pub fn wait_explained(timeout: Duration, explain: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "benchmark condition timed out:\n{}", explain());
        // The poll interval of a condition wait.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Patroni's `/cluster` as one member reports it.
pub fn cluster(addr: &str) -> Option<serde_json::Value> {
    let (_, body) = http(addr, "GET", "/cluster", "", Duration::from_secs(2))?;
    serde_json::from_str(&body).ok()
}

/// One HTTP/1.0 exchange with a member's REST API on port 8008.
fn http(addr: &str, method: &str, path: &str, body: &str, timeout: Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&format!("{addr}:8008").parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// The patroni process of host `i`.
pub fn patroni_pid(lan: &Lan, i: usize) -> Option<i32> {
    lan.pids(i).into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.contains("bin/patroni") && !c.starts_with("runuser"))
    })
}
