//! The one integration-test harness: a real cluster of real PostgreSQL
//! servers in a temp dir on free loopback ports, driven through the real
//! `pgrepl` binary. Everything waits on conditions with deadlines.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "Rep1-secret-for-tests-7Hq2";

/// A new P-256 key, unencrypted, for `openssl req`.
const EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// Ports below 32768, spread by pid so parallel test processes rarely meet.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A free TCP port on 127.0.0.1 whose health-API port (port + 10000, the
/// default) is free too; both stay below Linux's ephemeral range.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free ports (each with its port + 10000
/// free), taken from the counter at once: no other test of this run is
/// handed one of them (a test that used `free_port() + 1` once collided).
pub fn free_ports(n: u16) -> u16 {
    let _ = NEXT_PORT.compare_exchange(
        0,
        12000 + ((std::process::id() * 37) % 1000) as u16 * 10,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT_PORT.fetch_add(n, Ordering::SeqCst);
        let p = if p >= 22700 - n { 12000 + p % 1000 } else { p };
        let free =
            |q: u16| TcpListener::bind(("127.0.0.1", q)).is_ok() && TcpListener::bind(("127.0.0.1", q + 10000)).is_ok();
        if (p..p + n).all(free) {
            return p;
        }
    }
}

/// `GET path` on 127.0.0.1:port: (status code, body), or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// Poll `f` until it is true, or panic with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    wait_until_explained(what, timeout, f, String::new);
}

/// [`wait_until`], adding `explain()` (say, the supervisor's log) to the panic.
pub fn wait_until_explained(what: &str, timeout: Duration, mut f: impl FnMut() -> bool, explain: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}\n{}", explain());
        // The poll interval of a condition wait, not a synchronising sleep.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running HAProxy, stopped when dropped.
pub struct Haproxy(std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test cluster: a temp dir with pgrepl.toml and a password file.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
}

impl Cluster {
    /// 1 primary + `replicas` replicas, nothing started.
    pub fn new(replicas: usize) -> Self {
        Self::with_extra(replicas, "")
    }

    /// Same, with extra TOML appended to the config.
    pub fn with_extra(replicas: usize, extra: &str) -> Self {
        let mut c = Self::empty();
        let ports: Vec<u16> = (0..=replicas).map(|_| free_port()).collect();
        let mut toml = String::from(
            "[cluster]\nname = \"it\"\ndata_root = \"data\"\n\n[replication]\npassword_file = \"secrets/replicator.password\"\nclone_timeout = \"20s\"\n",
        );
        for (i, p) in ports.iter().enumerate() {
            toml.push_str(&format!("\n[[node]]\nname = \"pg-{}\"\nport = {p}\n", i + 1));
        }
        toml.push_str("\n[postgresql]\nshared_buffers = \"16MB\"\nmax_connections = 30\n");
        toml.push_str(extra);
        c.write("pgrepl.toml", &toml);
        c.ports = ports;
        c
    }

    /// Like [`Cluster::with_extra`], with extra `[replication]` keys.
    pub fn with_replication(replicas: usize, replication: &str, extra: &str) -> Self {
        let c = Self::with_extra(replicas, extra);
        let body = std::fs::read_to_string(c.config()).expect("config");
        c.write(
            "pgrepl.toml",
            &body.replacen("clone_timeout = \"20s\"\n", &format!("clone_timeout = \"20s\"\n{replication}"), 1),
        );
        c
    }

    /// Make a CA and a certificate it signs for `sans` (`IP:…`, `DNS:…`) in
    /// `certs/`, with the `openssl` command; with `other_ca`, a second,
    /// unrelated CA goes in `certs/<other_ca>.crt`.
    pub fn make_certs(&self, sans: &[&str], other_ca: Option<&str>) {
        std::fs::create_dir_all(self.path("certs")).unwrap();
        let ca = |name: &str| {
            let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
            let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=pgrepl test CA"];
            a.extend_from_slice(&EC_KEY);
            a.extend_from_slice(&["-keyout", &key, "-out", &crt]);
            self.openssl(&a);
        };
        ca("ca");
        self.write("certs/san.ext", &format!("subjectAltName={}\n", sans.join(",")));
        self.sign("ca", "server", "/CN=localhost", Some("san.ext"));
        if let Some(name) = other_ca {
            ca(name);
        }
        let key = self.path("certs/server.key");
        std::fs::set_permissions(key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }

    /// A key and a certificate `certs/<name>.{key,crt}` for `subject`,
    /// signed by CA `certs/<ca>.{crt,key}` (with `ext`, an extension file
    /// in `certs/`): a server's, or a client's for certificate auth.
    pub fn sign(&self, ca: &str, name: &str, subject: &str, ext: Option<&str>) {
        let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        let mut a = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
        a.extend_from_slice(&EC_KEY);
        self.openssl(&a);
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        let mut a = vec!["x509", "-req", "-days", "2", "-in", &csr, "-CA", &ca_crt, "-CAkey", &ca_key];
        a.extend_from_slice(&["-CAcreateserial", "-out", &crt]);
        // An extension file makes an X.509 v3 certificate (without one,
        // `x509 -req` makes v1, which rustls refuses, as browsers do).
        if ext.is_none() {
            self.write("certs/v3.ext", "basicConstraints=CA:FALSE\n");
        }
        a.extend_from_slice(&["-extfile", ext.unwrap_or("v3.ext")]);
        self.openssl(&a);
    }

    /// The `openssl` command in `certs/`, required to succeed.
    fn openssl(&self, args: &[&str]) {
        let o = Command::new("openssl").args(args).current_dir(self.path("certs")).output().expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", text(&o.stderr));
    }

    /// HAProxy running `cfg` (written as `haproxy.cfg` here), stopped on drop.
    pub fn haproxy(&self, cfg: &str) -> Haproxy {
        self.write("haproxy.cfg", cfg);
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(self.path("haproxy.cfg"))
            .arg("-db")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (scripts/install-deps.sh --test installs it)");
        Haproxy(child)
    }

    /// A `[tls]` section (and manual failover) using `certs/` and CA `ca`.
    pub fn tls_section(ca: &str) -> String {
        format!(
        "\n[failover]\nmode = \"manual\"\n\n[tls]\ncert_file = \"certs/server.crt\"\nkey_file = \"certs/server.key\"\nca_file = \"certs/{ca}\"\n"
    )
    }

    /// Write `tables` tables of 100k rows on `node`, switching WAL segment and
    /// checkpointing after each, so old WAL becomes recyclable.
    pub fn churn_wal(&self, node: &str, tables: usize) {
        for i in 0..tables {
            self.sql(node, &format!("CREATE TABLE f{i} AS SELECT g FROM generate_series(1, 100000) g"))
                .expect("create");
            self.sql(node, "SELECT pg_switch_wal()").expect("switch");
            self.sql(node, "CHECKPOINT").expect("checkpoint");
        }
    }

    /// A temp dir with only the password file.
    pub fn empty() -> Self {
        let dir = tempfile::Builder::new().prefix("pgrepl-it").tempdir_in("/tmp").expect("tempdir");
        // PostgreSQL runs as `postgres` when the tests run as root: let it in.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let c = Cluster { dir, ports: Vec::new() };
        c.write("secrets/replicator.password", &format!("{PASSWORD}\n"));
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// pgrepl's own lines from the supervisor's log, for failure messages.
    pub fn supervisor_log(&self) -> String {
        let log = std::fs::read_to_string(self.path("data/pgrepl.log")).unwrap_or_default();
        log.lines().filter(|l| l.starts_with("[pgrepl]")).collect::<Vec<_>>().join("\n")
    }

    pub fn config(&self) -> PathBuf {
        self.path("pgrepl.toml")
    }

    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.path("data").join(node)
    }

    /// Run `pgrepl -c <config> ARGS`.
    pub fn pgrepl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run pgrepl")
    }

    /// Start `pgrepl -c <config> ARGS` in the background (to kill it mid-way).
    pub fn pgrepl_spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run pgrepl")
    }

    /// Run `pgrepl -c <config> ARGS`, killing it after `limit`: None if it
    /// had not returned by then (a hang is a failure the test names).
    pub fn pgrepl_within(&self, args: &[&str], limit: Duration) -> Option<Output> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run pgrepl");
        let deadline = Instant::now() + limit;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            // The poll interval of a condition wait, not a synchronising sleep.
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(child.wait_with_output().expect("output"))
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.pgrepl(args);
        assert!(
            o.status.success(),
            "pgrepl {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// `up --detach`, required to succeed.
    pub fn up(&self) -> String {
        self.ok(&["up", "--detach"])
    }

    /// SQL through `pgrepl psql NODE -- -tAc SQL`.
    pub fn sql(&self, node: &str, sql: &str) -> Result<String, String> {
        let o = self.pgrepl(&["psql", node, "--", "-X", "-v", "ON_ERROR_STOP=1", "-tAc", sql]);
        if o.status.success() {
            Ok(text(&o.stdout).trim().to_string())
        } else {
            Err(text(&o.stderr))
        }
    }

    /// SQL in a given database.
    pub fn sql_db(&self, node: &str, db: &str, sql: &str) -> Result<String, String> {
        let o = self.pgrepl(&["psql", node, "--", "-X", "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql]);
        if o.status.success() {
            Ok(text(&o.stdout).trim().to_string())
        } else {
            Err(text(&o.stderr))
        }
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status json")
    }

    /// The status entry of one node.
    pub fn node_status(&self, node: &str) -> serde_json::Value {
        self.status()["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == node)
            .cloned()
            .expect("node in status")
    }

    /// True if the primary reports `node` as streaming.
    pub fn streaming(&self, node: &str) -> bool {
        self.node_status(node)["replication"]["state"] == "streaming"
    }

    /// Nodes whose status says they are a running, writable primary.
    pub fn nodes_writable(&self) -> Vec<String> {
        self.status()["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| n["state"] == "running" && n["role"] == "primary")
            .map(|n| n["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The postmaster pid of a node, from postmaster.pid.
    pub fn postmaster_pid(&self, node: &str) -> Option<i32> {
        std::fs::read_to_string(self.data_dir(node).join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }

    /// Pids of every process whose command line mentions this cluster's dir.
    pub fn processes(&self) -> Vec<i32> {
        let needle = self.dir.path().to_string_lossy().to_string();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").expect("proc").flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle) && pid != std::process::id() as i32 {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pgrepl(&["down"]);
        for pid in self.processes() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file under `dir` with its contents, to prove nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// True if the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| !r.starts_with('Z')))
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
