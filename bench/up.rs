//! Benchmark: `pgrepl up` from nothing to "all replicas streaming", against
//! the seeds' manual procedure scripted plainly (initdb, start, create role,
//! then one `pg_basebackup -R` and start per replica, one after another).
//! Also the supervisor's peak RSS. Prints figures; asserts nothing.
//!
//! Each run starts from a quiet disk, as a first run on a machine does:
//! - `sync` first, so no run pays for writing back its predecessor's files;
//! - every run's files are removed only at the end: ext4 skips inodes freed
//!   in the last 5-30 s when it allocates new ones, one check per freed
//!   inode, so right after a removal of the last run's ~5000 files, each
//!   file created costs up to a millisecond of kernel time (seen with
//!   `perf`: `recently_deleted`), and both procedures create ~1000 files
//!   per node.
//!
//! Run: `cargo bench --bench up` (as root, PostgreSQL runs as `postgres`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pid_of, proc_status_kb, tempdir, wait, BenchCluster};

use pgrepl::PgBin;
use pgrepl::RunAs;

const RUNS: usize = 5;

fn main() {
    let bin = pgrepl::find_postgres(None).expect("PostgreSQL binaries");
    let runas = RunAs::resolve("postgres").expect("os user");
    println!(
        "pgrepl up benchmark: PostgreSQL {} from {}, {RUNS} runs each, median reported",
        bin.version,
        bin.dir.display()
    );
    let mut port = 16000 + (std::process::id() % 300) as u16 * 20;
    let mut rss = Vec::new();
    // Removed when the benchmark ends (see the header).
    let (mut kept_clusters, mut kept_dirs) = (Vec::new(), Vec::new());
    println!(
        "{:<6} {:>10} {:>10} {:>7} {:>8}  pgrepl phases (median run)",
        "nodes", "pgrepl_s", "manual_s", "ratio", "target"
    );
    for (replicas, target) in [(2usize, 0.8f64), (4, 0.6)] {
        let mut ours = Vec::new();
        let mut manual = Vec::new();
        for _ in 0..RUNS {
            let (secs, phases, peak, c) = run_pgrepl(replicas, port);
            kept_clusters.push(c);
            port += 10;
            ours.push((secs, phases));
            rss.push(peak);
            let (secs, d) = run_manual(&bin, &runas, replicas, port);
            kept_dirs.push(d);
            manual.push(secs);
            port += 10;
        }
        ours.sort_by(|a, b| a.0.total_cmp(&b.0));
        manual.sort_by(f64::total_cmp);
        let (o, phases) = &ours[RUNS / 2];
        let m = manual[RUNS / 2];
        println!("1+{replicas:<4} {o:>10.2} {m:>10.2} {:>7.2} {:>8}  {phases}", o / m, format!("<={target}"));
    }
    let peak = rss.iter().copied().fold(0, u64::max);
    println!("supervisor peak RSS (VmHWM) while supervising: {:.1} MB (target <= 20 MB)", peak as f64 / 1024.0);
}

/// One `pgrepl up --detach`: wall seconds, the phases line, and the
/// supervisor's peak RSS in kB after a replica crash and restart; the
/// cluster is stopped and its files kept.
fn run_pgrepl(replicas: usize, port: u16) -> (f64, String, u64, BenchCluster) {
    let c = BenchCluster::new(replicas, port, "");
    // PGREPL_BENCH_CLONE_METHOD=builtin times pgrepl's own base backup instead.
    if let Ok(m) = std::env::var("PGREPL_BENCH_CLONE_METHOD") {
        let path = c.dir.path().join("pgrepl.toml");
        let body = std::fs::read_to_string(&path).expect("config");
        let body = body.replacen("[replication]\n", &format!("[replication]\nclone_method = \"{m}\"\n"), 1);
        std::fs::write(&path, body).expect("config");
    }
    quiet_disk();
    let t = Instant::now();
    let out = c.pgrepl(&["up", "--detach"]);
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pgrepl up failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let phases = text.lines().find_map(|l| l.split_once("timings: ").map(|(_, r)| r.to_string())).unwrap_or_default();
    // Exercise the supervisor: status queries, then a replica crash it must handle.
    for _ in 0..5 {
        c.pgrepl(&["status", "--json"]);
    }
    let data = c.data();
    let victim = pid_of(&data.join("n1/postmaster.pid"));
    let _ = Command::new("kill").args(["-9", &victim.to_string()]).status();
    wait(Duration::from_secs(60), || {
        pid_of(&data.join("n1/postmaster.pid")) != victim
            && String::from_utf8_lossy(&c.pgrepl(&["status", "--json"]).stdout).matches("\"streaming\"").count()
                == 2 * replicas
    });
    let peak = proc_status_kb(c.supervisor(), "VmHWM:");
    c.pgrepl(&["down"]);
    (secs, phases, peak, c)
}

/// The seeds' procedure, sequential, as a person would script it: wall
/// seconds, and its files, kept.
fn run_manual(bin: &PgBin, runas: &RunAs, replicas: usize, port: u16) -> (f64, tempfile::TempDir) {
    let d = tempdir();
    // The manual procedure runs everything as the OS user, as the seeds do.
    runas.chown(d.path()).expect("chown");
    let run = |prog: &str, args: &[&str]| {
        let mut c = Command::new(bin.program(prog));
        c.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        runas.apply(&mut c);
        let o = c.output().expect(prog);
        assert!(o.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let dir = |name: &str| -> PathBuf { d.path().join(name) };
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    let sock = s(&d.path().to_path_buf());
    quiet_disk();
    let t = Instant::now();
    let primary = dir("primary");
    run("initdb", &["-D", &s(&primary)]);
    append(
        &primary.join("postgresql.conf"),
        &format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{sock}'\nwal_level = replica\nmax_wal_senders = {}\nwal_keep_size = '160MB'\n",
            3 + 2 * replicas
        ),
    );
    append(&primary.join("pg_hba.conf"), "host replication replicator 127.0.0.1/32 trust\n");
    run("pg_ctl", &["-D", &s(&primary), "-l", &s(&dir("primary.log")), "-w", "start"]);
    let port_s = port.to_string();
    run("psql", &psql_args(&sock, &port_s, "-qc", "CREATE ROLE replicator WITH REPLICATION LOGIN"));
    for i in 1..=replicas {
        let r = dir(&format!("replica{i}"));
        run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "replicator",
                "-D",
                &s(&r),
                "-X",
                "stream",
                "-c",
                "fast",
                "-R",
            ],
        );
        append(&r.join("postgresql.conf"), &format!("port = {}\n", port + i as u16));
        run("pg_ctl", &["-D", &s(&r), "-l", &s(&dir(&format!("replica{i}.log"))), "-w", "start"]);
    }
    wait(Duration::from_secs(60), || {
        let mut c = Command::new(bin.program("psql"));
        c.args(psql_args(&sock, &port_s, "-tAc", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"));
        runas.apply(&mut c);
        c.output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == replicas.to_string()).unwrap_or(false)
    });
    let secs = t.elapsed().as_secs_f64();
    for i in (1..=replicas).rev() {
        run("pg_ctl", &["-D", &s(&dir(&format!("replica{i}"))), "-m", "fast", "-w", "stop"]);
    }
    run("pg_ctl", &["-D", &s(&primary), "-m", "fast", "-w", "stop"]);
    (secs, d)
}

/// psql arguments for the primary's socket.
fn psql_args<'a>(sock: &'a str, port: &'a str, flags: &'a str, sql: &'a str) -> [&'a str; 8] {
    ["-h", sock, "-p", port, "-d", "postgres", flags, sql]
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("open conf");
    f.write_all(text.as_bytes()).expect("append");
}

/// Flush what earlier runs left for the disk to write back.
fn quiet_disk() {
    let _ = Command::new("sync").status();
}
