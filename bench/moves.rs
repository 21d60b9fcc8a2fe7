//! Benchmark: moving the primary.
//! - switchover write-unavailability: the longest gap between consecutive
//!   acknowledged commits of a writer committing every 10 ms, median of 5
//!   switchovers, and acknowledged writes lost (must be 0);
//! - automatic failover: kill -9 of the primary with its restart made to
//!   fail (`primary_start_timeout = 2s`) to the first acknowledged write on
//!   the new primary, median of 3;
//! - rejoin with pg_rewind versus reclone on a pgbench database
//!   (`PGREPL_BENCH_SCALE`, default 70 ≈ 1 GB);
//! - as root, switchover across hosts on the namespace harness (three
//!   hosts, a 3-member etcd): the write gap of `pgrepl switchover` run on
//!   the target's host, median of 5 (alternating pg-2 and pg-1), then 5
//!   more through pgrepl's own `POST /switchover` on the third host's agent,
//!   and in the same run Patroni 4.x's `POST /switchover` on its REST API,
//!   the same way on its own etcd, with the ratios (`PGREPL_BENCH_RUNS` rounds;
//!   `PGREPL_BENCH_ONLY_HOSTS` runs only this part).
//!
//! Prints figures; asserts nothing. Run: `cargo bench --bench moves`.

mod common;
#[path = "common/hosts.rs"]
mod hosts;
#[path = "../tests/common/netns.rs"]
mod netns;
#[path = "../tests/common/writer.rs"]
mod writer;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{median, wait, BenchCluster};

const APP: &str = "[[database]]\nname = \"app\"\nowner = \"app\"\nowner_password_file = \"app.pw\"\n";

/// One acknowledged commit: id, when, and the port of the server that took it.
type Ack = (i64, Instant, i32);

/// Commits sequential ids every 10 ms through a read-write multi-host string.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(ports: &[u16]) -> Writer {
        let hosts = vec!["127.0.0.1"; ports.len()].join(",");
        let p: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        let conn = format!("host={hosts} port={} user=app password=app-secret dbname=app target_session_attrs=read-write connect_timeout=2", p.join(","));
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async move {
                let mut client: Option<tokio_postgres::Client> = None;
                let mut id = 0i64;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while !s.load(Ordering::SeqCst) {
                    tick.tick().await;
                    if client.as_ref().is_none_or(|c| c.is_closed()) {
                        client = match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                            Ok((c, conn)) => {
                                tokio::spawn(conn);
                                Some(c)
                            }
                            Err(_) => None,
                        };
                        continue;
                    }
                    id += 1;
                    let r = client
                        .as_ref()
                        .expect("client")
                        .query_one("WITH i AS (INSERT INTO w (id) VALUES ($1) ON CONFLICT DO NOTHING) SELECT inet_server_port()", &[&id])
                        .await;
                    match r {
                        Ok(row) => a.lock().expect("lock").push((id, Instant::now(), row.get(0))),
                        Err(_) => client = None,
                    }
                }
            });
        });
        Writer { stop, acked, thread: Some(thread) }
    }

    fn count(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    fn finish(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.acked.lock().expect("lock").clone()
    }
}

/// Longest gap between consecutive acknowledgements within [from, to].
fn longest_gap(acked: &[Ack], from: Instant, to: Instant) -> f64 {
    let times: Vec<Instant> = acked.iter().map(|a| a.1).filter(|t| *t >= from && *t <= to).collect();
    times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).fold(0.0, f64::max)
}

fn sql(c: &BenchCluster, node: &str, q: &str) -> String {
    let o = c.pgrepl(&["psql", node, "--", "-X", "-d", "app", "-tAc", q]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn app_cluster(replicas: usize, port: u16, extra: &str) -> BenchCluster {
    let c = BenchCluster::new(replicas, port, &format!("{APP}{extra}"));
    std::fs::write(c.dir.path().join("app.pw"), "app-secret\n").expect("pw");
    let up = c.pgrepl(&["up", "--detach"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    sql(&c, "n0", "CREATE TABLE w (id bigint PRIMARY KEY); ALTER TABLE w OWNER TO app");
    c
}

fn switchover(port: u16) {
    let c = app_cluster(2, port, "");
    let ports: Vec<u16> = (0..3).map(|i| port + i).collect();
    let w = Writer::start(&ports);
    wait(Duration::from_secs(30), || w.count() > 50);
    let mut gaps = Vec::new();
    let mut reported = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 { "n1" } else { "n0" };
        let before = w.count();
        let t0 = Instant::now();
        let o = c.pgrepl(&["switchover", "--to", to, "--yes"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "switchover failed: {out}{}", String::from_utf8_lossy(&o.stderr));
        wait(Duration::from_secs(30), || w.count() > before + 50);
        let acked = w.acked.lock().expect("lock").clone();
        gaps.push(longest_gap(&acked, t0, Instant::now()));
        if let Some(s) = out.lines().find_map(|l| {
            l.split_once("unavailable for ").map(|(_, r)| r.trim_end_matches('s').parse::<f64>().unwrap_or(0.0))
        }) {
            reported.push(s);
        }
    }
    let acked = w.finish();
    let primary = if sql(&c, "n0", "SELECT pg_is_in_recovery()") == "f" { "n0" } else { "n1" };
    let present: std::collections::HashSet<i64> =
        sql(&c, primary, "SELECT id FROM w").lines().filter_map(|l| l.parse().ok()).collect();
    let lost = acked.iter().filter(|(id, _, _)| !present.contains(id)).count();
    println!(
        "switchover (1+2, writer every 10 ms): longest commit gap median {:.3} s over 5 (target <= 1 s; each: {}), pgrepl-reported window median {:.3} s; acknowledged writes {} , lost {lost}",
        median(&mut gaps.clone()),
        gaps.iter().map(|g| format!("{g:.3}")).collect::<Vec<_>>().join(", "),
        median(&mut reported),
        acked.len()
    );
}

fn failover(port: u16) -> f64 {
    let c = app_cluster(2, port, "[monitor]\ninterval = \"200ms\"\n[failover]\nprimary_start_timeout = \"2s\"\n");
    let ports: Vec<u16> = (0..3).map(|i| port + i).collect();
    let w = Writer::start(&ports);
    wait(Duration::from_secs(30), || w.count() > 20);
    let base = c.data().join("n0/postgresql.base.conf");
    let mut conf = std::fs::read_to_string(&base).expect("base conf");
    conf.push_str("\nthis_setting_does_not_exist = 1\n");
    std::fs::write(&base, conf).expect("break conf");
    let pid = common::pid_of(&c.data().join("n0/postmaster.pid"));
    let t0 = Instant::now();
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    // The first write acknowledged by another server than the killed one.
    let old = i32::from(port);
    let first = || w.acked.lock().expect("lock").iter().find(|a| a.1 > t0 && a.2 != old).map(|a| a.1);
    wait(Duration::from_secs(60), || first().is_some());
    let at = first().expect("first write on the new primary");
    let _ = w.finish();
    (at - t0).as_secs_f64()
}

fn rejoin_vs_reclone(port: u16, scale: u32) {
    let c = BenchCluster::new(1, port, "[failover]\nmode = \"manual\"\n");
    let up = c.pgrepl(&["up", "--detach"]);
    assert!(up.status.success());
    let size = c.pgbench_init(scale);
    // A failover leaves the old primary to rejoin, with a little divergence.
    assert!(c.pgrepl(&["failover", "--stop-primary", "--yes", "--to", "n1"]).status.success());
    let t = Instant::now();
    let o = c.pgrepl(&["rejoin", "n0"]);
    let rejoin = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = Instant::now();
    let o = c.pgrepl(&["reclone", "n0", "--discard", "--yes"]);
    let reclone = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!(
        "rejoin with pg_rewind: {rejoin:.2} s; reclone: {reclone:.2} s ({:.1}x faster to rewind) on a {size} database",
        reclone / rejoin
    );
}

fn main() {
    let port = 14000 + (std::process::id() % 100) as u16 * 20;
    println!("pgrepl moves benchmark");
    if std::env::var_os("PGREPL_BENCH_ONLY_HOSTS").is_some() {
        return across_hosts();
    }
    switchover(port);
    let mut f: Vec<f64> = (0..3).map(|i| failover(port + 4 + i * 4)).collect();
    println!(
        "automatic failover (kill -9, restart made to fail, primary_start_timeout 2 s): first acknowledged write on the new primary after median {:.2} s (runs: {}; target <= 3.5 s)",
        median(&mut f.clone()),
        f.iter_mut().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
    );
    let scale = std::env::var("PGREPL_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(70);
    rejoin_vs_reclone(port + 16, scale);
    across_hosts();
}

/// One switchover across hosts: write gap and acknowledged writes lost.
struct Moved {
    gap: f64,
}

/// Switchover across hosts, pgrepl and then Patroni, the same way.
fn across_hosts() {
    if !nix::unistd::geteuid().is_root() {
        println!("switchover across hosts: skipped (network namespaces need root)");
        return;
    }
    let runs: usize = std::env::var("PGREPL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let site = hosts::PgreplSite::start();
    let w = site.writer();
    w.wait_more(100);
    let mut primary = 1;
    // The command on the target's host, then POST /switchover to the third
    // host's agent (the automation path): the same move either way.
    let mut round = |r: usize, api: bool| {
        let to = if primary == 1 { 2 } else { 1 };
        let t0 = Instant::now();
        if api {
            site.post(3, "/switchover", &format!(r#"{{"to": "pg-{to}"}}"#));
        } else {
            site.pgrepl(to, &["switchover", "--to", &format!("pg-{to}"), "--yes"]);
        }
        let took = t0.elapsed().as_secs_f64();
        moved(&w, t0, &site.lan.hosts[to - 1].addr);
        site.wait_streaming(to);
        let settled = t0.elapsed().as_secs_f64();
        primary = to;
        let m = Moved { gap: w.longest_gap_since(t0).as_secs_f64() };
        let how = if api { "POST /switchover on host 3" } else { "pgrepl switchover" };
        println!(
            "{how} {r} (to pg-{to}): write gap {:.2}s, answered after {took:.2}s, both replicas streaming again after {settled:.2}s",
            m.gap
        );
        m
    };
    let ours: Vec<Moved> = (1..=runs).map(|r| round(r, false)).collect();
    let ours_api: Vec<Moved> = (1..=runs).map(|r| round(r, true)).collect();
    let acked = w.finish();
    let missing = lost(&acked, &site.ids(&site.lan.hosts[primary - 1].addr));
    let ours_gap = summary_hosts("pgrepl switchover across hosts", &ours, missing);
    let api_gap = summary_hosts("pgrepl POST /switchover across hosts", &ours_api, missing);
    drop(site);

    let Some(patroni) = hosts::patroni() else {
        println!("Patroni: not measured (could not install it with pip into target/patroni-venv)");
        return;
    };
    let site = hosts::PatroniSite::start(&patroni, 30, 10, 10);
    let w = site.writer();
    w.wait_more(100);
    let mut leader = site.settled().expect("a leader");
    let theirs: Vec<Moved> = (1..=runs)
        .map(|r| {
            let i = hosts::host_of(site.lan(), &leader);
            let to = if i == 1 { 2 } else { 1 };
            let to_addr = site.lan().hosts[to - 1].addr.clone();
            let t0 = Instant::now();
            let (code, body) = site.switchover(&leader, &format!("p{i}"), &format!("p{to}"));
            assert_eq!(code, 200, "Patroni POST /switchover: {body}");
            let took = t0.elapsed().as_secs_f64();
            moved(&w, t0, &to_addr);
            common::wait(Duration::from_secs(120), || site.settled().is_some_and(|l| l == to_addr));
            leader = to_addr;
            let m = Moved { gap: w.longest_gap_since(t0).as_secs_f64() };
            println!("Patroni switchover {r} (to p{to}): write gap {:.2}s, request {took:.2}s", m.gap);
            m
        })
        .collect();
    let acked = w.finish();
    let missing = lost(&acked, &site.ids(&leader));
    let theirs_gap = summary_hosts("Patroni POST /switchover (ttl 30, loop_wait 10)", &theirs, missing);
    println!("ratio pgrepl / Patroni: switchover write gap {:.2}", ours_gap / theirs_gap);
    println!("ratio pgrepl POST /switchover / Patroni POST /switchover: write gap {:.2}", api_gap / theirs_gap);
}

/// Wait until the server at `addr` acknowledged a write after `t0`, and a
/// few more came in after it.
fn moved(w: &writer::Writer, t0: Instant, addr: &str) {
    common::wait(Duration::from_secs(120), || {
        w.first_ack_elsewhere_after(t0).is_some_and(|(_, s)| s.starts_with(&format!("{addr}:")))
    });
    w.wait_more(20);
}

fn lost(acked: &[i64], have: &[i64]) -> usize {
    let have: std::collections::HashSet<&i64> = have.iter().collect();
    acked.iter().filter(|id| !have.contains(id)).count()
}

/// Print the median write gap of these switchovers; returns it.
fn summary_hosts(what: &str, rounds: &[Moved], lost: usize) -> f64 {
    let mut gaps: Vec<f64> = rounds.iter().map(|m| m.gap).collect();
    let (min, max) = (gaps.iter().cloned().fold(f64::MAX, f64::min), gaps.iter().cloned().fold(0.0, f64::max));
    let gap = median(&mut gaps);
    println!(
        "{what}: median write gap {gap:.2}s (min {min:.2}, max {max:.2}), acknowledged writes lost in all runs: {lost}"
    );
    gap
}
