//! Benchmark: failover across hosts on etcd, as root (`cargo bench --bench ha`).
//!
//! Three hosts as network namespaces on a bridge and a 3-member etcd in
//! namespaces of their own (the test harness's `tests/common/netns.rs`).
//! A writer commits through the libpq multi-host URL from outside the hosts
//! (1 s client timeout), then the primary's host is killed: every process
//! in its namespace gets SIGKILL at once. Per run it reports
//! - RTO: the kill → the first write acknowledged by another server;
//! - the longest write gap;
//! - acknowledged writes missing on the new primary;
//! - RSS of the primary's agent and of its fence, before the kill.
//!
//! In the same run, Patroni 4.x is measured the same way on the same etcd,
//! with its defaults (ttl 30, loop_wait 10, retry_timeout 10) and at ttl
//! 20 (loop_wait 5, retry_timeout 5), if it is installed in a venv under
//! `target/patroni-venv` (the bench installs it there with the system
//! Python's pip, and makes the path readable for the `postgres` OS user,
//! which runs Patroni; without pip it says so and skips Patroni). Prints
//! figures; asserts nothing.

mod common;
#[path = "../tests/common/netns.rs"]
mod netns;
#[path = "../tests/common/writer.rs"]
mod writer;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{median, proc_status_kb, tempdir, wait};
use netns::{Lan, PORT};
use writer::Writer;

/// One failover's figures.
struct Round {
    rto: f64,
    gap: f64,
    lost: usize,
    acked: usize,
    rss_kb: (u64, u64),
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("bench ha: skipped (network namespaces need root)");
        return;
    }
    let runs: usize = std::env::var("PGREPL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let ours: Vec<Round> = (1..=runs)
        .filter(|_| std::env::var_os("PGREPL_BENCH_SKIP_PGREPL").is_none())
        .map(|i| report("pgrepl", i, pgrepl_round()))
        .collect();
    let ours_rto = if ours.is_empty() { f64::NAN } else { summary("pgrepl (ttl 3s)", &ours) };
    let (mut agent, mut fence): (Vec<f64>, Vec<f64>) =
        ours.iter().map(|r| (r.rss_kb.0 as f64 / 1024.0, r.rss_kb.1 as f64 / 1024.0)).unzip();
    if !ours.is_empty() {
        println!(
            "pgrepl RSS: agent {:.1} MB, fence {:.1} MB (median of {runs})",
            median(&mut agent),
            median(&mut fence)
        );
    }
    let Some(patroni) = patroni() else {
        println!("Patroni: not measured (could not install it with pip into target/patroni-venv)");
        return;
    };
    for (label, ttl, loop_wait, retry) in [("Patroni defaults (ttl 30)", 30, 10, 10), ("Patroni ttl 20", 20, 5, 5)] {
        let rounds: Vec<Round> =
            (1..=runs).map(|i| report(label, i, patroni_round(&patroni, ttl, loop_wait, retry))).collect();
        let theirs = summary(label, &rounds);
        println!("ratio pgrepl / {label}: RTO {:.2}", ours_rto / theirs);
    }
}

fn report(what: &str, i: usize, r: Round) -> Round {
    println!(
        "{what} run {i}: RTO {:.2}s, longest write gap {:.2}s, acknowledged {} lost {}",
        r.rto, r.gap, r.acked, r.lost
    );
    r
}

/// Print the medians; returns the median RTO.
fn summary(what: &str, rounds: &[Round]) -> f64 {
    let rto = median(&mut rounds.iter().map(|r| r.rto).collect::<Vec<_>>());
    let gap = median(&mut rounds.iter().map(|r| r.gap).collect::<Vec<_>>());
    let min = rounds.iter().map(|r| r.rto).fold(f64::MAX, f64::min);
    let max = rounds.iter().map(|r| r.rto).fold(0.0, f64::max);
    let lost: usize = rounds.iter().map(|r| r.lost).sum();
    println!(
        "{what}: median RTO {rto:.2}s (min {min:.2}, max {max:.2}), median longest gap {gap:.2}s, acknowledged writes lost in all runs: {lost}"
    );
    rto
}

fn addrs(lan: &Lan) -> Vec<(String, u16)> {
    lan.hosts.iter().map(|h| (h.addr.clone(), PORT)).collect()
}

/// Kill host `i`; wait for a write acknowledged elsewhere; count the rest.
fn fail_over(lan: &Lan, w: Writer, i: usize, rss_kb: (u64, u64), count: impl Fn(&str) -> Vec<i64>) -> Round {
    let t0 = Instant::now();
    lan.kill_host(i);
    let mut first = None;
    wait(Duration::from_secs(120), || {
        first = w.first_ack_elsewhere_after(t0);
        first.is_some()
    });
    let (at, server) = first.unwrap();
    w.wait_more(20);
    let gap = w.longest_gap().as_secs_f64();
    let acked = w.finish();
    let host = server.split(':').next().unwrap_or_default().to_string();
    let have: std::collections::HashSet<i64> = count(&host).into_iter().collect();
    let lost = acked.iter().filter(|id| !have.contains(id)).count();
    Round { rto: (at - t0).as_secs_f64(), gap, lost, acked: acked.len(), rss_kb }
}

fn pgrepl_round() -> Round {
    let dir = tempdir();
    let mut lan = Lan::new(3, dir.path()).expect("hosts");
    let etcd = lan.start_etcd(3);
    lan.write_pgrepl_configs(dir.path(), &etcd, "async", "");
    let pgrepl = |i: usize, args: &[&str]| {
        let o = lan
            .exec(i, env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(dir.path().join(format!("host{i}.toml")))
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("pgrepl");
        assert!(o.status.success(), "host {i}: {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    pgrepl(1, &["up", "--detach"]);
    std::thread::scope(|s| {
        s.spawn(|| pgrepl(2, &["up", "--detach"]));
        s.spawn(|| pgrepl(3, &["up", "--detach"]));
    });
    wait(Duration::from_secs(60), || {
        let st: serde_json::Value = serde_json::from_str(&pgrepl(1, &["status", "--json"])).unwrap_or_default();
        let nodes = st["nodes"].as_array().cloned().unwrap_or_default();
        nodes.iter().filter(|n| n["replication"]["state"] == "streaming").count() == 2
    });
    let sql = "CREATE TABLE w (id bigint PRIMARY KEY); ALTER TABLE w OWNER TO app";
    pgrepl(1, &["psql", "pg-1", "--", "-X", "-d", "app", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    let w = Writer::start_at(&addrs(&lan), Some(Duration::from_secs(1)));
    w.wait_more(100);
    let agent = std::fs::read_to_string(dir.path().join("h1/pgrepl.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        .expect("agent pid");
    let fence = child_named(agent, "pgrepl").expect("fence pid");
    let rss = (proc_status_kb(agent, "VmRSS:"), proc_status_kb(fence, "VmRSS:"));
    fail_over(&lan, w, 1, rss, |host| {
        let i = lan.hosts.iter().position(|h| h.addr == host).expect("host") + 1;
        let node = format!("pg-{i}");
        pgrepl(i, &["psql", &node, "--", "-X", "-d", "app", "-tAc", "SELECT id FROM w"])
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    })
}

/// A child of `parent` whose command name is `comm`.
fn child_named(parent: i32, comm: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).find(|p| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
        let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        ppid == Some(parent) && name.trim() == comm
    })
}

/// `target/patroni-venv/bin/patroni`, installing it with pip if needed.
fn patroni() -> Option<PathBuf> {
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

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SUPER: &str = "bench-super-secret";

fn patroni_round(patroni: &Path, ttl: u32, loop_wait: u32, retry: u32) -> Round {
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
    // One leader and two streaming replicas, as its REST API reports.
    let mut leader = String::new();
    let logs = || {
        (1..=3)
            .map(|n| std::fs::read_to_string(dir.path().join(format!("p{n}.log"))).unwrap_or_default())
            .map(|l| {
                let bad = |x: &&str| ["ERROR", "FATAL", "CRITICAL", "rror:"].iter().any(|w| x.contains(w));
                l.lines().filter(bad).take(12).collect::<Vec<_>>().join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    wait_explained(Duration::from_secs(180), logs, || {
        let Some(c) = cluster(&lan.hosts[0].addr) else { return false };
        let members = c["members"].as_array().cloned().unwrap_or_default();
        let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
        if let Some(l) = members.iter().find(|m| m["role"] == "leader" && m["state"] == "running") {
            leader = l["host"].as_str().unwrap_or_default().to_string();
        }
        streaming == 2 && !leader.is_empty()
    });
    let psql = |host: &str, sql: &str| {
        let o = Command::new(format!("{PG_BIN}/psql"))
            .args([
                "-X",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host,
                "-p",
                &PORT.to_string(),
                "-U",
                "postgres",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", SUPER)
            .output()
            .expect("psql");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    psql(&leader, "CREATE TABLE w (id bigint PRIMARY KEY)");
    let login = format!("user=postgres password={SUPER} dbname=postgres");
    let w = Writer::start_as(&addrs(&lan), &login, Some(Duration::from_secs(1)));
    w.wait_more(100);
    let i = lan.hosts.iter().position(|h| h.addr == leader).expect("leader host") + 1;
    let pid = patroni_pid(&lan, i).unwrap_or(0);
    let rss = (proc_status_kb(pid, "VmRSS:"), 0);
    let round = fail_over(&lan, w, i, rss, |host| {
        psql(host, "SELECT id FROM w").lines().filter_map(|l| l.trim().parse().ok()).collect()
    });
    drop(lan);
    for mut c in children {
        let _ = c.wait();
    }
    round
}

/// [`wait`], printing `explain()` if it times out.
fn wait_explained(timeout: Duration, explain: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "benchmark condition timed out:\n{}", explain());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Patroni's `/cluster` as one member reports it.
fn cluster(addr: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&format!("{addr}:8008").parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /cluster HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// The patroni process of host `i`.
fn patroni_pid(lan: &Lan, i: usize) -> Option<i32> {
    lan.pids(i).into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.contains("bin/patroni") && !c.starts_with("runuser"))
    })
}
