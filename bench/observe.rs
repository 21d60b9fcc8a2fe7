//! Benchmark: the cost of observing a cluster.
//! - `pgrepl status --json` latency (whole command), median of 20, on 1+2 and 1+4;
//! - a `/metrics` scrape from the supervisor's health API, median of 200;
//! - the supervisor's CPU and RSS while its monitor runs at a 1 s interval on 1+4.
//!
//! Prints figures; asserts nothing. Run: `cargo bench --bench observe`.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{cpu_ticks, median, proc_status_kb, wait, BenchCluster};

fn scrape(port: u16, path: &str) -> usize {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").expect("write");
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("read");
    body.len()
}

fn main() {
    let mut port = 12500 + (std::process::id() % 400) as u16 * 10;
    println!("pgrepl observe benchmark");
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
