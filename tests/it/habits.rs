//! The habits people bring from Patroni and friends: what they type and
//! what they expect back.

use std::time::Duration;

use crate::harness::{text, wait_until, Cluster};

const T: Duration = Duration::from_secs(60);

/// `rejoin` on a healthy, streaming replica stopped and restarted it. It has
/// nothing to do: it says so, exits 0 and touches nothing.
#[test]
fn rejoin_of_a_healthy_standby_does_nothing_and_says_so() {
    let c = Cluster::new(1);
    c.up();
    wait_until("pg-2 streaming", T, || c.streaming("pg-2"));
    let pid = c.postmaster_pid("pg-2").unwrap();
    let out = c.ok(&["rejoin", "pg-2"]);
    assert!(out.contains("pg-2 already streams from the primary pg-1; nothing to do"), "{out}");
    assert_eq!(c.postmaster_pid("pg-2"), Some(pid), "the standby was restarted");
}

/// `check` paged right after `pgrepl restart pg-2` reported success
/// (CRITICAL "running but not streaming", OK 2 s later). During the settling
/// time after a restart pgrepl made, it is at most a WARNING that says so.
#[test]
fn check_right_after_a_restart_pgrepl_made_is_not_critical() {
    let c = Cluster::new(2);
    c.up();
    wait_until("both streaming", T, || c.streaming("pg-2") && c.streaming("pg-3"));
    c.ok(&["restart", "pg-2"]);
    let o = c.pgrepl(&["check"]);
    let out = text(&o.stdout);
    assert_ne!(o.status.code(), Some(2), "{out}");
    if o.status.code() == Some(1) {
        assert!(out.contains("settling after restart of pg-2"), "{out}");
    }
    assert_eq!(c.status()["settling"], "restart of pg-2");
    assert!(!out.contains("max_lag=Us"), "{out}");
}

/// `reload --dry-run` says what a reload would change and changes nothing;
/// `reload` mentions pgrepl's own settings only when one of them changed.
#[test]
fn reload_dry_run_shows_each_change_and_changes_nothing() {
    let c = Cluster::with_extra(1, "\n[monitor]\ninterval = \"1s\"\n");
    c.up();
    let out = c.ok(&["reload"]);
    assert!(!out.contains("pgrepl's own settings"), "nothing of pgrepl's own changed: {out}");
    let conf = c.data_dir("pg-1").join("postgresql.conf");
    let before = std::fs::read_to_string(&conf).unwrap();
    let body = std::fs::read_to_string(c.config()).unwrap();
    let body = body
        .replace("shared_buffers = \"16MB\"", "shared_buffers = \"32MB\"\nwork_mem = \"8MB\"")
        .replace("interval = \"1s\"", "interval = \"2s\"");
    c.write("pgrepl.toml", &format!("{body}\n[[database]]\nname = \"newdb\"\nowner = \"newowner\"\n"));
    let out = c.ok(&["reload", "--dry-run"]);
    for want in [
        "pg-1: shared_buffers: '16MB' -> '32MB' (takes a restart)",
        "pg-1: work_mem: (not set) -> '8MB' (takes a reload)",
        "pg-2: shared_buffers: '16MB' -> '32MB' (takes a restart)",
        "pg-1: would create role newowner (LOGIN)",
        "pg-1: would create database newdb owned by newowner",
        "pgrepl's own settings changed ([monitor])",
        "dry run: nothing was changed",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before, "a dry run wrote the file");
    assert_eq!(c.sql("pg-1", "SELECT count(*) FROM pg_database WHERE datname = 'newdb'").unwrap(), "0");
    let out = c.ok(&["reload"]);
    assert!(out.contains("pgrepl's own settings changed ([monitor])"), "{out}");
    assert_eq!(c.sql("pg-1", "SELECT count(*) FROM pg_database WHERE datname = 'newdb'").unwrap(), "1");
}

/// Logs read after an incident: pgrepl's own lines carry a timestamp and a
/// level; `--log-format json` writes one object per line (postgres lines
/// too); `--quiet-postgres` keeps postgres lines out of the output and in
/// each node's own log file.
#[test]
fn log_lines_have_time_and_level_json_and_quiet_postgres_work() {
    let c = Cluster::new(1);
    c.ok(&["up", "--detach", "--log-format", "json"]);
    c.ok(&["down"]);
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    let mut sources = std::collections::HashSet::new();
    for l in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["ts"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(["info", "warn", "error"].contains(&v["level"].as_str().unwrap()), "{l}");
        sources.insert(v["source"].as_str().unwrap().to_string());
    }
    assert!(sources.contains("pgrepl") && sources.contains("pg-1") && sources.contains("pg-2"), "{sources:?}");

    std::fs::remove_file(c.path("data/pgrepl.log")).unwrap();
    c.ok(&["up", "--detach", "--quiet-postgres"]);
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    assert!(!log.lines().any(|l| l.starts_with("[pg-")), "postgres lines in the output:\n{log}");
    let own: Vec<&str> = log.lines().filter(|l| l.starts_with("[pgrepl] ")).collect();
    assert!(!own.is_empty());
    for l in own {
        // `[pgrepl] 2026-11-30T06:58:12.809Z INFO  message`
        let mut f = l.split_whitespace();
        let (_, ts, level) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{l}");
        assert!(["INFO", "WARN", "ERROR"].contains(&level), "{l}");
    }
    let node_log = std::fs::read_to_string(c.path("data/log/pg-1.log")).unwrap();
    assert!(node_log.contains("database system is ready to accept connections"), "{node_log}");
}
