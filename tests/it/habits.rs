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

/// As `nobody`, who reads the config and the monitoring role's password
/// file but neither the replication secret nor the data root.
fn as_nobody(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-c")
        .arg(c.config())
        .args(args)
        .output()
        .unwrap()
}

/// Declarative `[[role]]`s, kept on `reload`, and a monitoring role that
/// lets `check` and `status` run as a user without the replication secret
/// (they failed with "cannot read replication password file").
#[test]
fn declared_roles_are_kept_and_a_monitoring_role_observes_without_secrets() {
    if !crate::harness::is_root() {
        eprintln!("skipped: switching to `nobody` needs root");
        return;
    }
    let role =
        "\n[[role]]\nname = \"watcher\"\npassword_file = \"secrets/watcher.password\"\nin_roles = [\"pg_monitor\"]\n";
    let c = Cluster::with_extra(1, &format!("\n[monitor]\nrole = \"watcher\"\n{role}"));
    c.write("secrets/watcher.password", "watch-me-9\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(c.path("secrets/replicator.password"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(c.path("secrets"), std::fs::Permissions::from_mode(0o755)).unwrap();
    c.up();
    wait_until("pg-2 streaming", T, || c.streaming("pg-2"));
    let member = "SELECT pg_has_role('watcher', 'pg_monitor', 'member')";
    assert_eq!(c.sql("pg-1", member).unwrap(), "t");

    let o = as_nobody(&c, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let o = as_nobody(&c, &["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["primary"], "pg-1");
    assert_eq!(st["nodes"][1]["replication"]["state"], "streaming", "pg_monitor sees pg_stat_replication: {st}");
    // Without the role, the same user cannot observe at all.
    assert!(!as_nobody(&c, &["up", "--detach"]).status.success());

    // An unknown membership is refused with its place, and nothing changes.
    let body = std::fs::read_to_string(c.config()).unwrap();
    c.write("pgrepl.toml", &body.replace("[\"pg_monitor\"]", "[\"pg_monitor\", \"no_such_role\"]"));
    let conf = std::fs::read_to_string(c.data_dir("pg-1").join("postgresql.conf")).unwrap();
    let o = c.pgrepl(&["reload"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("pgrepl.toml:") && err.contains("role `no_such_role` does not exist"), "{err}");
    assert_eq!(std::fs::read_to_string(c.data_dir("pg-1").join("postgresql.conf")).unwrap(), conf);

    // Membership removed from the config is revoked; a new password applies.
    c.write("pgrepl.toml", &body.replace("in_roles = [\"pg_monitor\"]", "in_roles = []"));
    c.write("secrets/watcher.password", "watch-me-10\n");
    let out = c.ok(&["reload"]);
    assert!(out.contains("role watcher is no longer a member of pg_monitor"), "{out}");
    assert_eq!(c.sql("pg-1", member).unwrap(), "f");
    let login = std::process::Command::new("psql")
        .arg(format!("host=127.0.0.1 port={} user=watcher dbname=postgres password=watch-me-10", c.ports[0]))
        .args(["-XtAc", "SELECT 1"])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", text(&login.stderr));

    // A role dropped from the config is never dropped from the cluster.
    let without = body.replace(role, "").replace("\n[monitor]\nrole = \"watcher\"\n", "\n");
    c.write("pgrepl.toml", &without);
    let out = c.ok(&["reload"]);
    assert!(out.contains("role watcher is no longer a [[role]] in the config; pgrepl never drops roles"), "{out}");
    assert_eq!(c.sql("pg-1", "SELECT count(*) FROM pg_roles WHERE rolname = 'watcher'").unwrap(), "1");
}
