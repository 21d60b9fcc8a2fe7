//! Hosts as network namespaces, shared by the multi-host tests and the HA
//! benchmark: a bridge in this namespace (whose address, the "gateway", is
//! where the test's clients connect from), hosts h1..hN at .11, .12, ...
//! and etcd members e1..eM in namespaces of their own at .21, .22, ..., so
//! a host's link to etcd can be cut apart from its links to other hosts.
//! Needs root and iproute2. Dropping the `Lan` kills everything in it.

// Shared by test binaries and benchmarks; each uses a part.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every host's nodes listen on the same port, as Patroni users run them.
pub const PORT: u16 = 5432;

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr)))
    }
}

/// One namespace on the bridge.
pub struct Ns {
    pub name: String,
    veth: String,
    pub addr: String,
}

/// One etcd member, in its own namespace, on its standard ports.
struct Member {
    ns: usize,
    child: Option<Child>,
    args: Vec<String>,
}

pub struct Lan {
    bridge: String,
    /// This namespace's address on the bridge.
    pub gateway: String,
    pub hosts: Vec<Ns>,
    etcd_ns: Vec<Ns>,
    members: Vec<Member>,
    dir: std::path::PathBuf,
}

impl Lan {
    /// A bridge and `hosts` host namespaces. `dir` holds etcd's data.
    pub fn new(hosts: u32, dir: &std::path::Path) -> Result<Lan, String> {
        // Unique per Lan within this process (tests run in parallel threads).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n_th = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Interface names stay within Linux's 15 characters ("pgr123456h3").
        let tag = (std::process::id() % 1000) * 100 + n_th % 100;
        let net = 10 + (std::process::id() * 7 + n_th) % 240;
        let bridge = format!("pgrb{tag}");
        let gateway = format!("10.232.{net}.1");
        let mut lan = Lan {
            bridge: bridge.clone(),
            gateway: gateway.clone(),
            hosts: Vec::new(),
            etcd_ns: Vec::new(),
            members: Vec::new(),
            dir: dir.to_path_buf(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=hosts {
            let ns = lan.namespace(
                &format!("pgrepl-h{tag}-{i}"),
                &format!("pgr{tag}h{i}"),
                &format!("10.232.{net}.{}", 10 + i),
            )?;
            lan.hosts.push(ns);
        }
        Ok(lan)
    }

    fn namespace(&self, name: &str, veth: &str, addr: &str) -> Result<Ns, String> {
        ip(&["netns", "add", name])?;
        let ns = Ns { name: name.to_string(), veth: veth.to_string(), addr: addr.to_string() };
        ip(&["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name])?;
        ip(&["link", "set", veth, "master", &self.bridge])?;
        ip(&["link", "set", veth, "up"])?;
        ip(&["-n", name, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ip(&["-n", name, "link", "set", "eth0", "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Start an etcd cluster of `n` members (Debian's etcd-server), with the
    /// timing the README recommends on a LAN; returns the client URLs once
    /// every member says it is healthy.
    pub fn start_etcd(&mut self, n: u32) -> Vec<String> {
        let net = self.gateway.rsplit_once('.').map(|(a, _)| a.to_string()).unwrap_or_default();
        let tag = self.bridge.trim_start_matches("pgrb").to_string();
        let addrs: Vec<String> = (1..=n).map(|j| format!("{net}.{}", 20 + j)).collect();
        let cluster: Vec<String> =
            addrs.iter().enumerate().map(|(j, a)| format!("e{}=http://{a}:2380", j + 1)).collect();
        for (j, a) in addrs.iter().enumerate() {
            let ns = self
                .namespace(&format!("pgrepl-e{tag}-{}", j + 1), &format!("pgr{tag}e{}", j + 1), a)
                .expect("etcd namespace");
            let args: Vec<String> = [
                "--name",
                &format!("e{}", j + 1),
                "--data-dir",
                &self.dir.join(format!("etcd{}", j + 1)).display().to_string(),
                "--listen-client-urls",
                &format!("http://{a}:2379"),
                "--advertise-client-urls",
                &format!("http://{a}:2379"),
                "--listen-peer-urls",
                &format!("http://{a}:2380"),
                "--initial-advertise-peer-urls",
                &format!("http://{a}:2380"),
                "--initial-cluster",
                &cluster.join(","),
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            self.etcd_ns.push(ns);
            let mut m = Member { ns: self.etcd_ns.len() - 1, child: None, args };
            m.child = Some(self.spawn_member(&m));
            self.members.push(m);
        }
        let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}:2379")).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !addrs.iter().all(|a| healthy(a)) {
            assert!(Instant::now() < deadline, "etcd did not become healthy (is etcd-server installed?)");
            // The poll interval of a condition wait.
            std::thread::sleep(Duration::from_millis(50));
        }
        urls
    }

    fn spawn_member(&self, m: &Member) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.etcd_ns[m.ns].name, "etcd"])
            .args(&m.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; bash scripts/install-deps.sh --test installs it)")
    }

    /// SIGKILL etcd member `j` (1-based).
    pub fn kill_etcd(&mut self, j: usize) {
        kill_all(&pids(&self.etcd_ns[j - 1].name), nix::sys::signal::Signal::SIGKILL);
        if let Some(mut c) = self.members[j - 1].child.take() {
            let _ = c.wait();
        }
    }

    /// Start etcd member `j` again on its data dir.
    pub fn restart_etcd(&mut self, j: usize) {
        let child = self.spawn_member(&self.members[j - 1]);
        self.members[j - 1].child = Some(child);
    }

    /// The member (1-based) that is etcd's leader now, if one says so.
    pub fn etcd_leader(&self) -> Option<usize> {
        (1..=self.etcd_ns.len()).find(|j| {
            status(&self.etcd_ns[j - 1].addr).is_some_and(|s| {
                let id = |k: &str| {
                    s.split(&format!("\"{k}\":\"")).nth(1).and_then(|r| r.split('"').next()).map(str::to_string)
                };
                id("leader").is_some() && id("leader") == id("member_id")
            })
        })
    }

    /// Whether `key` exists in etcd, asked of the first member that answers.
    pub fn etcd_key_exists(&self, key: &str) -> Option<bool> {
        let body = format!(
            "{{\"key\":\"{}\"}}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_bytes())
        );
        self.etcd_ns.iter().find_map(|e| post(&e.addr, "/v3/kv/range", &body)).map(|t| t.contains("\"kvs\""))
    }

    /// Put `key` = `value` on a lease of `ttl` seconds (as a command on
    /// another host would leave a request).
    pub fn etcd_put_leased(&self, key: &str, value: &str, ttl: u64) -> bool {
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s.as_bytes());
        self.etcd_ns.iter().any(|e| {
            let Some(grant) = post(&e.addr, "/v3/lease/grant", &format!("{{\"TTL\":{ttl}}}")) else { return false };
            let json = grant.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let id =
                serde_json::from_str::<serde_json::Value>(json).ok().and_then(|v| v["ID"].as_str().map(str::to_string));
            let Some(id) = id else { return false };
            let body = format!("{{\"key\":\"{}\",\"value\":\"{}\",\"lease\":\"{id}\"}}", b64(key), b64(value));
            post(&e.addr, "/v3/kv/put", &body).is_some()
        })
    }

    /// Delete `key`.
    pub fn etcd_delete(&self, key: &str) -> bool {
        let body = format!(
            "{{\"key\":\"{}\"}}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_bytes())
        );
        self.etcd_ns.iter().any(|e| post(&e.addr, "/v3/kv/deleterange", &body).is_some())
    }

    /// Every key and value under `prefix`, decoded, as one text.
    pub fn etcd_dump(&self, prefix: &str) -> Option<String> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
        let body = format!("{{\"key\":\"{}\",\"range_end\":\"{}\"}}", b64(prefix.as_bytes()), b64(&end));
        let text = self.etcd_ns.iter().find_map(|e| post(&e.addr, "/v3/kv/range", &body))?;
        let json = text.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let decode = |s: &serde_json::Value| {
            s.as_str()
                .and_then(|s| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let kvs = v["kvs"].as_array()?;
        Some(
            kvs.iter()
                .map(|kv| {
                    format!(
                        "{} = {}\n",
                        decode(&kv["key"]).unwrap_or_default(),
                        decode(&kv["value"]).unwrap_or_default()
                    )
                })
                .collect(),
        )
    }

    /// Pids in host `i`'s namespace (1-based).
    pub fn pids(&self, i: usize) -> Vec<i32> {
        pids(&self.hosts[i - 1].name)
    }

    /// SIGKILL every process of host `i`: its agent, its fence and its
    /// PostgreSQL at once, as when the machine dies.
    pub fn kill_host(&self, i: usize) {
        kill_all(&self.pids(i), nix::sys::signal::Signal::SIGKILL);
    }

    /// Freeze or thaw every process of host `i` at once, as a paused VM:
    /// the cgroup v1 freezer, with the host's processes moved into a
    /// cgroup of its own first; SIGSTOP/SIGCONT of each where there is no
    /// freezer (then the processes stop one after another).
    pub fn freeze_host(&self, i: usize, freeze: bool) {
        let cg = self.freezer(i);
        if !std::path::Path::new(FREEZER).is_dir() {
            let sig = if freeze { nix::sys::signal::Signal::SIGSTOP } else { nix::sys::signal::Signal::SIGCONT };
            return kill_all(&self.pids(i), sig);
        }
        if !freeze {
            return set_freezer(&cg, "THAWED");
        }
        std::fs::create_dir_all(&cg).expect("freezer cgroup");
        // A process forked while the others move is caught by the next
        // round; one moved into a frozen cgroup freezes with it.
        for round in 0..3 {
            for pid in self.pids(i) {
                // A process that exited in between is no longer there to move.
                let _ = std::fs::write(cg.join("cgroup.procs"), pid.to_string());
            }
            if round == 0 {
                set_freezer(&cg, "FROZEN");
            }
        }
    }

    /// Host `i`'s freezer cgroup.
    fn freezer(&self, i: usize) -> std::path::PathBuf {
        std::path::Path::new(FREEZER).join(&self.hosts[i - 1].name)
    }

    /// Cut (or heal) host `i`'s routes to every etcd member (and to a
    /// member on the gateway); its links to the other hosts stay.
    pub fn cut_from_etcd(&self, i: usize, cut: bool) {
        let what = if cut { "add" } else { "del" };
        let ns = &self.hosts[i - 1].name;
        for e in &self.etcd_ns {
            ip(&["-n", ns, "route", what, "blackhole", &format!("{}/32", e.addr)]).unwrap();
        }
    }

    /// Write `host<i>.toml` (and the password files) in `dir` for a pgrepl
    /// cluster "hosts" with node pg-<i> on host i, on `etcd`: the same
    /// config everywhere but for each host's own data root `h<i>`. The
    /// application (a writer, a watcher) logs in as `app` from the gateway.
    /// `durability` is `[replication] durability`; `extra` goes at the end.
    pub fn write_pgrepl_configs(&self, dir: &std::path::Path, etcd: &[String], durability: &str, extra: &str) {
        let mut body = format!("[cluster]\nname = \"hosts\"\ndata_root = \"DATA\"\n\n[replication]\npassword_file = \"secrets/replicator.password\"\nclone_timeout = \"30s\"\ndurability = \"{durability}\"\n");
        for (i, h) in self.hosts.iter().enumerate() {
            let n = i + 1;
            body.push_str(&format!(
                "\n[[node]]\nname = \"pg-{n}\"\nhost = \"{}\"\nport = {PORT}\napi_port = 8008\n",
                h.addr
            ));
        }
        let urls: Vec<String> = etcd.iter().map(|u| format!("\"{u}\"")).collect();
        body.push_str(&format!(
            "\n[postgresql]\nshared_buffers = \"16MB\"\nmax_connections = 30\n\n[[database]]\nname = \"app\"\nowner = \"app\"\nowner_password_file = \"secrets/app.password\"\n\n[[hba]]\ntype = \"host\"\ndatabase = \"app\"\nuser = \"app\"\naddress = \"{}/32\"\nmethod = \"scram-sha-256\"\n\n[monitor]\ninterval = \"200ms\"\n\n[etcd]\nendpoints = [{}]\nttl = \"3s\"\n{extra}",
            self.gateway,
            urls.join(", ")
        ));
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).expect("secrets dir");
        for (f, text) in [("app.password", "app-secret\n"), ("replicator.password", "Rep1-secret-for-tests-7Hq2\n")] {
            let path = secrets.join(f);
            if !path.exists() {
                std::fs::write(&path, text).expect("password file");
            }
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        }
        for i in 1..=self.hosts.len() {
            std::fs::write(dir.join(format!("host{i}.toml")), body.replace("DATA", &format!("h{i}"))).expect("config");
        }
    }

    /// Cut (or heal) host `i` from the other hosts, both ways; etcd stays
    /// reachable.
    pub fn cut_from_hosts(&self, i: usize, cut: bool) {
        let what = if cut { "add" } else { "del" };
        let me = &self.hosts[i - 1];
        for h in self.hosts.iter().filter(|h| h.name != me.name) {
            ip(&["-n", &me.name, "route", what, "blackhole", &format!("{}/32", h.addr)]).unwrap();
            ip(&["-n", &h.name, "route", what, "blackhole", &format!("{}/32", me.addr)]).unwrap();
        }
    }

    /// Drop host `i`'s traffic with the other hosts silently, both ways,
    /// as a switch that loses frames does (`cut` false heals it). Each side
    /// sends to a link-layer address nobody has, so nothing answers and no
    /// error comes back: unlike a blackhole route, a sender learns of the
    /// partition only from its own timeouts. etcd stays reachable.
    pub fn drop_between_hosts(&self, i: usize, cut: bool) {
        let me = &self.hosts[i - 1];
        let pair = |from: &Ns, to: &Ns| {
            let r = if cut {
                ip(&[
                    "-n",
                    &from.name,
                    "neigh",
                    "replace",
                    &to.addr,
                    "lladdr",
                    "02:00:00:00:00:01",
                    "nud",
                    "permanent",
                    "dev",
                    "eth0",
                ])
            } else {
                ip(&["-n", &from.name, "neigh", "del", &to.addr, "dev", "eth0"])
            };
            r.unwrap();
        };
        for h in self.hosts.iter().filter(|h| h.name != me.name) {
            pair(me, h);
            pair(h, me);
        }
    }

    /// A command run in host `i`'s namespace.
    pub fn exec(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i - 1].name, program]);
        c
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // A frozen process takes a SIGKILL only once thawed.
        for i in 1..=self.hosts.len() {
            if self.freezer(i).is_dir() {
                set_freezer(&self.freezer(i), "THAWED");
            }
        }
        for ns in self.hosts.iter().chain(&self.etcd_ns) {
            kill_all(&pids(&ns.name), nix::sys::signal::Signal::SIGKILL);
        }
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.wait();
            }
        }
        for ns in self.hosts.iter().chain(&self.etcd_ns) {
            let _ = ip(&["link", "del", &ns.veth]);
            let _ = ip(&["netns", "del", &ns.name]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        // Empty once its processes are gone (the kernel reaps them shortly
        // after the SIGKILL; a leftover empty cgroup costs nothing).
        for i in 1..=self.hosts.len() {
            let cg = self.freezer(i);
            let deadline = Instant::now() + Duration::from_secs(5);
            while cg.is_dir() && std::fs::remove_dir(&cg).is_err() && Instant::now() < deadline {
                // The poll interval of a condition wait.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Where the cgroup v1 freezer is mounted (Debian 12's hybrid layout).
const FREEZER: &str = "/sys/fs/cgroup/freezer";

/// Set a freezer cgroup's state and wait until the kernel reports it.
fn set_freezer(cg: &std::path::Path, state: &str) {
    std::fs::write(cg.join("freezer.state"), state).expect("freezer.state");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(cg.join("freezer.state")).unwrap_or_default().trim() != state {
        assert!(Instant::now() < deadline, "the freezer did not reach {state}");
        // The poll interval of a condition wait.
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pids(ns: &str) -> Vec<i32> {
    let o = Command::new("ip").args(["netns", "pids", ns]).output().expect("ip netns pids");
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn kill_all(pids: &[i32], sig: nix::sys::signal::Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), sig);
    }
}

fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let sa: std::net::SocketAddr = format!("{addr}:2379").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1).is_some_and(|code| code == "200").then_some(text)
}

fn healthy(addr: &str) -> bool {
    get(addr, "/health").is_some_and(|t| t.contains("\"health\":\"true\""))
}

/// `/v3/maintenance/status` of one member.
fn status(addr: &str) -> Option<String> {
    post(addr, "/v3/maintenance/status", "{}")
}

/// POST `body` to one member's gateway: the answer, if it is a 200.
fn post(addr: &str, path: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let sa: std::net::SocketAddr = format!("{addr}:2379").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1).is_some_and(|code| code == "200").then_some(text)
}
