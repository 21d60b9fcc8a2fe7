//! Benchmark: what the dashboard's history costs in the agent (issue #15).
//!
//! A 1+2 cluster with its monitor at a 100 ms interval (ten times the
//! default) for 10 minutes (`PGREPL_BENCH_SECONDS` to change it), with a
//! page's feed (`/ui/events`) open throughout. Once a minute: the frames
//! received, the samples the ring holds and the bytes it says it holds
//! (its own count, heap included), the events' bytes, and the agent's RSS.
//! At the end: bytes per sample, and an hour's cost (the ring's cap).
//!
//! Prints figures; asserts nothing. Run: `cargo bench --bench dashboard`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{proc_status_kb, wait, BenchCluster};

/// The ring's cap (src/observe/dashboard/samples.rs): an hour at one a second.
const CAPACITY: u64 = 3600;

/// Follow `/ui/events`, sending each frame's `memory` object.
fn follow(port: u16, tx: mpsc::Sender<serde_json::Value>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET /ui/events HTTP/1.1\r\nHost: bench\r\n\r\n").expect("write");
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { return };
        let Some(json) = line.strip_prefix("data: ") else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { continue };
        if tx.send(v["memory"].clone()).is_err() {
            return;
        }
    }
}

fn main() {
    let seconds: u64 = std::env::var("PGREPL_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let c = BenchCluster::new(2, 19640, "[monitor]\ninterval = \"100ms\"\n");
    let up = c.pgrepl(&["up", "--detach"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let sup = c.supervisor();
    let api = c.port + 10000;
    wait(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", api)).is_ok());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || follow(api, tx));

    println!("dashboard history, 1+2 at a 100 ms monitor interval, for {seconds} s:");
    println!(
        "{:>6} {:>8} {:>8} {:>12} {:>8} {:>12} {:>10}",
        "min", "frames", "samples", "history B", "events", "events B", "RSS kB"
    );
    let start = Instant::now();
    let mut frames = 0u64;
    let mut last = serde_json::Value::Null;
    let mut first: Option<serde_json::Value> = None;
    let mut next_report = Duration::from_secs(60).min(Duration::from_secs(seconds));
    while start.elapsed() < Duration::from_secs(seconds) {
        // The feed's pace: a frame per snapshot.
        if let Ok(m) = rx.recv_timeout(Duration::from_secs(1)) {
            frames += 1;
            last = m;
        }
        if start.elapsed() >= next_report {
            let n = |k: &str| last[k].as_u64().unwrap_or(0);
            println!(
                "{:>6.1} {frames:>8} {:>8} {:>12} {:>8} {:>12} {:>10}",
                start.elapsed().as_secs_f64() / 60.0,
                n("samples"),
                n("history_bytes"),
                n("events"),
                n("events_bytes"),
                proc_status_kb(sup, "VmRSS:"),
            );
            first.get_or_insert_with(|| last.clone());
            next_report += Duration::from_secs(60);
        }
    }
    // What one more sample adds, from the first report to the last; an
    // hour is what the ring holds now plus that for each sample it lacks.
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0) as f64;
    let (samples, bytes) = (n(&last, "samples"), n(&last, "history_bytes"));
    let (s0, b0) = first.as_ref().map_or((0.0, 0.0), |f| (n(f, "samples"), n(f, "history_bytes")));
    let per = if samples > s0 { (bytes - b0) / (samples - s0) } else { 0.0 };
    let hour = bytes + (CAPACITY as f64 - samples).max(0.0) * per;
    println!(
        "{frames} snapshots in {seconds} s kept as {samples} samples (one a second, at most {CAPACITY}); \
         {per:.0} bytes per added sample; an hour of history (the cap, at any interval of 1 s or less) \
         costs {:.0} kB for this 3-node cluster with 2 slots",
        hour / 1024.0
    );
    let _ = c.pgrepl(&["down"]);
}
