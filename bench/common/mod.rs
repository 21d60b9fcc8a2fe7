//! Shared by the benchmarks: a throw-away cluster driven through the real
//! `pgrepl` binary, and small polling helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A temp dir the `postgres` OS user can traverse.
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("pgrepl-bench").tempdir_in("/tmp").expect("tempdir");
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    d
}

/// A cluster config with `replicas` replicas from `port`, in a temp dir.
pub struct BenchCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl BenchCluster {
    pub fn new(replicas: usize, port: u16, extra: &str) -> Self {
        let dir = tempdir();
        let mut toml = "[cluster]\nname = \"bench\"\n[replication]\npassword_file = \"pw\"\n".to_string();
        for i in 0..=replicas {
            toml.push_str(&format!("[[node]]\nname = \"n{i}\"\nport = {}\n", port + i as u16));
        }
        toml.push_str(extra);
        std::fs::write(dir.path().join("pgrepl.toml"), toml).expect("config");
        std::fs::write(dir.path().join("pw"), "bench-password\n").expect("pw");
        BenchCluster { dir, port }
    }

    pub fn pgrepl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(self.dir.path().join("pgrepl.toml"))
            .args(args)
            .output()
            .expect("pgrepl")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `pgbench -i -s SCALE` on the primary `n0`, then wait until `n1` has
    /// replayed it all. Returns the database size, as PostgreSQL prints it.
    pub fn pgbench_init(&self, scale: u32) -> String {
        let bin = pgrepl::find_postgres(None).expect("bin");
        let t = Instant::now();
        let o = Command::new(bin.program("pgbench"))
            .args(["-i", "-q", "-s", &scale.to_string(), "-h"])
            .arg(self.data().join("sockets"))
            .args(["-p", &self.port.to_string(), "-U", "postgres", "postgres"])
            .output()
            .expect("pgbench");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let size = String::from_utf8_lossy(
            &self.pgrepl(&["psql", "n0", "--", "-tAc", "SELECT pg_size_pretty(pg_database_size('postgres'))"]).stdout,
        )
        .trim()
        .to_string();
        println!("pgbench -i -s {scale}: {size} in {:.1} s", t.elapsed().as_secs_f64());
        wait(Duration::from_secs(300), || {
            let s: serde_json::Value =
                serde_json::from_slice(&self.pgrepl(&["status", "--json"]).stdout).unwrap_or_default();
            s["nodes"][1]["replication"]["lag_bytes"]["replay"] == 0
        });
        size
    }

    /// The supervisor's pid.
    pub fn supervisor(&self) -> i32 {
        pid_of(&self.data().join("pgrepl.pid"))
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        let _ = self.pgrepl(&["down"]);
    }
}

/// The first line of a pid file, as a pid (0 if unreadable).
pub fn pid_of(path: &Path) -> i32 {
    std::fs::read_to_string(path).ok().and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok())).unwrap_or(0)
}

/// Poll a condition with a deadline.
pub fn wait(timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "benchmark condition timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A field of /proc/<pid>/status in kB.
pub fn proc_status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the comm.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// CPU time of a postmaster and everything it started, in clock ticks: its
/// own, its reaped children's (cutime, cstime: backends that came and went)
/// and its live children's.
pub fn tree_cpu_ticks(postmaster: i32) -> u64 {
    let fields = |pid: i32| -> Vec<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r).to_string();
        rest.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0)).collect()
    };
    let own = fields(postmaster);
    // After the comm: 1 = ppid, 11/12 = utime/stime, 13/14 = cutime/cstime.
    let mut total = own.get(11..15).map_or(0, |v| v.iter().sum());
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let f = fields(pid);
        if f.get(1).copied() == Some(postmaster as u64) {
            total += f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        }
    }
    total
}

/// Median of a sample (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
