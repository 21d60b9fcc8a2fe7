//! Benchmark: the cost of durability.
//! - pgbench at a fixed rate (`-R`) for `PGREPL_BENCH_SECONDS` (default 60)
//!   on 1+2 in async, sync and sync-strict: TPS, p50/p99 latency, and the
//!   max replay lag seen by the supervisor's snapshots;
//!   and sync again with `[tls]` (verify-full), for what encrypting the
//!   replication stream costs a synchronous commit;
//! - `wal-push` throughput versus plain `cp` followed by `sync`.
//!
//! Prints figures; asserts nothing. Run: `cargo bench --bench durability`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{tempdir, BenchCluster};

fn pgbench_run(mode: &str, tls: bool, port: u16, secs: u64, rate: u32) {
    let certs = tempdir();
    let mut extra = "[monitor]\ninterval = \"500ms\"\n".to_string();
    if tls {
        // pgrepl's own `init --tls` makes the CA and certificate.
        let gen = certs.path().join("gen");
        let o = Command::new(env!("CARGO_BIN_EXE_pgrepl")).args(["init", "--tls"]).arg(&gen).output().expect("init");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let f = |n: &str| gen.join("certs").join(n).display().to_string();
        extra.push_str(&format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\n",
            f("server.crt"),
            f("server.key"),
            f("ca.crt")
        ));
    }
    let c = BenchCluster::new(2, port, &extra);
    let cfg = c.dir.path().join("pgrepl.toml");
    let body = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .replace("password_file = \"pw\"\n", &format!("password_file = \"pw\"\ndurability = \"{mode}\"\n"));
    std::fs::write(&cfg, body).expect("cfg");
    let up = c.pgrepl(&["up", "--detach"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let bin = pgrepl::find_postgres(None).expect("bin");
    let sock = c.data().join("sockets");
    let init = Command::new(bin.program("pgbench"))
        .args(["-i", "-q", "-s", "5", "-h"])
        .arg(&sock)
        .args(["-p", &port.to_string(), "-U", "postgres", "postgres"])
        .output()
        .expect("pgbench -i");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    // Wait until the sync list is in place before measuring.
    if mode != "async" {
        common::wait(Duration::from_secs(30), || {
            String::from_utf8_lossy(&c.pgrepl(&["psql", "n0", "--", "-tAc", "SHOW synchronous_standby_names"]).stdout)
                .trim()
                .starts_with("ANY")
        });
    }
    let logdir = tempdir();
    let bench = Command::new(bin.program("pgbench"))
        .args(["-n", "-c", "4", "-j", "2", "-R", &rate.to_string(), "-T", &secs.to_string(), "-l", "--log-prefix"])
        .arg(logdir.path().join("pgbench_log"))
        .arg("-h")
        .arg(&sock)
        .args(["-p", &port.to_string(), "-U", "postgres", "postgres"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pgbench");
    let mut max_lag: f64 = 0.0;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let s: serde_json::Value = serde_json::from_slice(&c.pgrepl(&["status", "--json"]).stdout).unwrap_or_default();
        for n in s["nodes"].as_array().into_iter().flatten() {
            if let Some(l) = n["replication"]["lag_seconds"]["replay"].as_f64() {
                max_lag = max_lag.max(l);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = bench.wait_with_output().expect("pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text.lines().find(|l| l.starts_with("tps")).unwrap_or("tps = ?").to_string();
    let mut lat: Vec<f64> = Vec::new();
    for e in std::fs::read_dir(logdir.path()).expect("logs").flatten() {
        for line in std::fs::read_to_string(e.path()).unwrap_or_default().lines() {
            // client_id transaction_no time(us) script_no time_epoch time_us [schedule_lag]
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse::<f64>().ok()) {
                lat.push(us / 1000.0);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(f64::NAN);
    let mode = if tls { format!("{mode}+tls") } else { mode.to_string() };
    println!(
        "{mode:<12} {tps}; latency p50 {:.2} ms, p99 {:.2} ms over {} transactions; max replay lag {:.3} s",
        pct(0.5),
        pct(0.99),
        lat.len(),
        max_lag
    );
}

fn wal_push_throughput() {
    let d = tempdir();
    let seg = d.path().join("segment");
    std::fs::write(&seg, vec![0x5au8; 16 << 20]).expect("segment");
    let n = 32;
    let arch = d.path().join("archive");
    std::fs::create_dir(&arch).expect("archive");
    let t = Instant::now();
    for i in 0..n {
        let name = format!("{:024X}", i + 1);
        let o = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
            .args(["wal-push", "--archive"])
            .arg(&arch)
            .arg(&seg)
            .arg(&name)
            .output()
            .expect("wal-push");
        assert!(o.status.success());
    }
    let push = t.elapsed().as_secs_f64();
    let plain = d.path().join("plain");
    std::fs::create_dir(&plain).expect("plain");
    let t = Instant::now();
    for i in 0..n {
        let o = Command::new("cp").arg(&seg).arg(plain.join(format!("{:024X}", i + 1))).status().expect("cp");
        assert!(o.success());
        let _ = Command::new("sync").status();
    }
    let cp = t.elapsed().as_secs_f64();
    let mb = (n * 16) as f64;
    println!("wal-push: {:.0} MB/s ({n} x 16 MB, fsync + rename each); cp + sync: {:.0} MB/s", mb / push, mb / cp);
}

fn main() {
    let secs = std::env::var("PGREPL_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let rate = 200;
    let port = 18000 + (std::process::id() % 100) as u16 * 10;
    println!("pgrepl durability benchmark: pgbench -R {rate} -c 4 for {secs} s on 1+2, scale 5");
    for (i, (mode, tls)) in
        [("async", false), ("sync", false), ("sync-strict", false), ("sync", true)].iter().enumerate()
    {
        pgbench_run(mode, *tls, port + i as u16 * 4, secs, rate);
    }
    wal_push_throughput();
}
