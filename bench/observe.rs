//! Benchmark: the cost of observing a cluster.
//! - `pgrepl status --json` latency (whole command), median of 20, on 1+2 and 1+4;
//! - a `/metrics` scrape from the supervisor's health API, median of 200;
//! - the supervisor's CPU and RSS while its monitor runs at a 1 s interval on 1+4;
//! - the idle cost (issue #17): on an idle 1+2 cluster at the default 1 s
//!   interval, over 60 s, the CPU of the supervisor and of the cluster's
//!   PostgreSQL processes, and what each query of a snapshot costs.
//!
//! Prints figures; asserts nothing. Run: `cargo bench --bench observe`.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{cpu_ticks, median, pid_of, proc_status_kb, tree_cpu_ticks, wait, BenchCluster};

fn scrape(port: u16, path: &str) -> usize {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").expect("write");
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("read");
    body.len()
}

/// Issue #17's figures: the whole stack's idle CPU, and each snapshot query's cost.
fn idle_cost(port: u16) {
    let c = BenchCluster::new(2, port, "[monitor]\ninterval = \"1s\"\n");
    let up = c.pgrepl(&["up", "--detach"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let sup = c.supervisor();
    let postmasters: Vec<i32> = (0..3).map(|i| pid_of(&c.data().join(format!("n{i}/postmaster.pid")))).collect();
    // Let the clones' and the bootstrap's work settle before measuring.
    std::thread::sleep(Duration::from_secs(5));
    let hz = 100.0; // USER_HZ on Linux
    let pg = || postmasters.iter().map(|p| tree_cpu_ticks(*p)).sum::<u64>();
    let (s0, p0, t) = (cpu_ticks(sup), pg(), Instant::now());
    // A fixed wall-clock window while the monitor ticks at 1 s.
    std::thread::sleep(Duration::from_secs(60));
    let secs = t.elapsed().as_secs_f64();
    let pct = |ticks: u64| ticks as f64 / hz / secs * 100.0;
    let (s, p) = (pct(cpu_ticks(sup) - s0), pct(pg() - p0));
    println!(
        "idle 1+2 at 1 s over {secs:.0} s: supervisor {s:.2}% + PostgreSQL {p:.2}% = {:.2}% of one core (goal <= 0.6%; Patroni 4.1.5 + etcd + PostgreSQL measured 1.5%)",
        s + p
    );
    // What each query of a snapshot costs, asked 200 times on a kept
    // connection (as the gatherer asks it) over the primary's socket.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let socket = c.data().join("sockets");
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&socket).port(c.port).user("postgres").dbname("postgres");
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        println!("per-query cost on the primary (200 runs each; the node query runs on every node every tick):");
        for (name, sql, slow) in pgrepl::probe_queries(15) {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match &slow {
                Some(b) => vec![b],
                None => vec![],
            };
            let mut unprepared = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                client.query(sql.as_str(), &params).await.expect("query");
                unprepared.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let stmt = client.prepare(&sql).await.expect("prepare");
            let mut prepared = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                client.query(&stmt, &params).await.expect("query");
                prepared.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            println!(
                "  {name:<22} {:.3} ms parsed and planned each time, {:.3} ms prepared (as the monitor runs it)",
                median(&mut unprepared),
                median(&mut prepared)
            );
        }
    });
}

fn main() {
    let mut port = 12500 + (std::process::id() % 400) as u16 * 10;
    println!("pgrepl observe benchmark");
    idle_cost(port);
    port += 10;
    for replicas in [2usize, 4] {
        let c = BenchCluster::new(replicas, port, "[monitor]\ninterval = \"1s\"\n");
        port += 10;
        let up = c.pgrepl(&["up", "--detach"]);
        assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
        let mut lat = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let o = c.pgrepl(&["status", "--json"]);
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(o.status.success());
        }
        println!(
            "status --json, 1+{replicas}: median {:.1} ms over 20 runs (target <= 50 ms on 1+4)",
            median(&mut lat)
        );
        if replicas != 4 {
            continue;
        }
        let api = c.port + 10000;
        wait(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", api)).is_ok());
        let mut scrapes = Vec::new();
        let mut size = 0;
        for _ in 0..200 {
            let t = Instant::now();
            size = scrape(api, "/metrics");
            scrapes.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "/metrics scrape (1+4, {size} bytes): median {:.3} ms over 200 (target <= 5 ms)",
            median(&mut scrapes)
        );
        let sup = c.supervisor();
        let hz = 100.0; // USER_HZ on Linux
        let window = Duration::from_secs(20);
        let before = cpu_ticks(sup);
        let t = Instant::now();
        // Measure over a fixed wall-clock window while the monitor ticks at 1 s.
        std::thread::sleep(window);
        let used = (cpu_ticks(sup) - before) as f64 / hz;
        println!(
            "supervisor while monitoring 1+4 at 1 s: CPU {:.2}% of one core over {:.0} s (target <= 1%), RSS {:.1} MB, peak {:.1} MB (target <= 25 MB)",
            used / t.elapsed().as_secs_f64() * 100.0,
            t.elapsed().as_secs_f64(),
            proc_status_kb(sup, "VmRSS:") as f64 / 1024.0,
            proc_status_kb(sup, "VmHWM:") as f64 / 1024.0
        );
    }
}
