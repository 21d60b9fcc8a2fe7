//! Clone speed: `pgrepl reclone` of a standby of a pgbench database with
//! pg_basebackup versus pgrepl's built-in base backup, runs interleaved so
//! the disk's moods hit both alike. Scale from PGREPL_BENCH_SCALE (default
//! 70, about 1 GB).

mod common;

use std::time::Instant;

use common::{median, BenchCluster};

fn main() {
    let port = 14000 + (std::process::id() % 100) as u16 * 20;
    let scale = std::env::var("PGREPL_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(70);
    println!("pgrepl clone benchmark");
    let c = BenchCluster::new(1, port, "[failover]\nmode = \"manual\"\n");
    assert!(c.pgrepl(&["up", "--detach"]).status.success());
    let size = c.pgbench_init(scale);
    let config = c.dir.path().join("pgrepl.toml");
    let base = std::fs::read_to_string(&config).expect("config");
    let mut times = [Vec::new(), Vec::new()];
    let methods = ["pg_basebackup", "builtin"];
    for _ in 0..3 {
        for (i, m) in methods.iter().enumerate() {
            let body = base.replacen("[replication]\n", &format!("[replication]\nclone_method = \"{m}\"\n"), 1);
            std::fs::write(&config, body).expect("config");
            let t = Instant::now();
            let o = c.pgrepl(&["reclone", "n1", "--discard", "--yes"]);
            times[i].push(t.elapsed().as_secs_f64());
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }
    for (i, m) in methods.iter().enumerate() {
        let runs: Vec<String> = times[i].iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "reclone with {m}: median {:.2} s (runs: {}) on a {size} database",
            median(&mut times[i].clone()),
            runs.join(", ")
        );
    }
    println!("built-in / pg_basebackup: {:.2}", median(&mut times[1].clone()) / median(&mut times[0].clone()));
}
