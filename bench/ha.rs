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
#[path = "common/hosts.rs"]
mod hosts;
#[path = "../tests/common/netns.rs"]
mod netns;
#[path = "../tests/common/writer.rs"]
mod writer;

use std::time::{Duration, Instant};

use common::{median, proc_status_kb, wait};
use hosts::{child_named, host_of, patroni, patroni_pid, PatroniSite, PgreplSite};
use netns::Lan;
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
    let site = PgreplSite::start();
    let w = site.writer();
    w.wait_more(100);
    let agent = std::fs::read_to_string(site.dir.path().join("h1/pgrepl.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        .expect("agent pid");
    let fence = child_named(agent, "pgrepl").expect("fence pid");
    let rss = (proc_status_kb(agent, "VmRSS:"), proc_status_kb(fence, "VmRSS:"));
    fail_over(&site.lan, w, 1, rss, |host| site.ids(host))
}

fn patroni_round(patroni: &std::path::Path, ttl: u32, loop_wait: u32, retry: u32) -> Round {
    let site = PatroniSite::start(patroni, ttl, loop_wait, retry);
    let leader = site.settled().expect("a leader");
    let w = site.writer();
    w.wait_more(100);
    let i = host_of(site.lan(), &leader);
    let pid = patroni_pid(site.lan(), i).unwrap_or(0);
    let rss = (proc_status_kb(pid, "VmRSS:"), 0);
    fail_over(site.lan(), w, i, rss, |host| site.ids(host))
}
