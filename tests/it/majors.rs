//! The core flow on other PostgreSQL majors, live: PostgreSQL 11 uses the
//! old layout (recovery.conf, wal_keep_segments, pg_ctl promote), and
//! PostgreSQL 17 is newer than every installed pg_basebackup, so its
//! replicas are copied by pgrepl's own base backup. `scripts/install-deps.sh`
//! puts their server binaries in /opt/pgrepl/postgresql/<major>.

use std::time::Duration;

use crate::harness::{text, wait_until, Cluster};

/// A 1+1 cluster on the server binaries of `major`, up, with a row on the
/// replica; returns the cluster and `up`'s output.
fn up_on_major(major: u32, extra: &str) -> (Cluster, String) {
    let bindir = format!("/opt/pgrepl/postgresql/{major}/bin");
    assert!(
        std::path::Path::new(&bindir).join("postgres").is_file(),
        "PostgreSQL {major} binaries missing in {bindir}: run `sudo bash scripts/install-deps.sh`"
    );
    let c = Cluster::with_extra(1, &format!("\n[failover]\nmode = \"manual\"\n{extra}"));
    let body = std::fs::read_to_string(c.config())
        .unwrap()
        .replace("data_root = \"data\"", &format!("data_root = \"data\"\npostgres_bin = \"{bindir}\""));
    c.write("pgrepl.toml", &body);
    let out = c.up();
    assert!(out.contains(&format!("(PostgreSQL {major}.")), "{out}");
    assert_eq!(c.sql("pg-1", "SHOW server_version_num").unwrap().get(..2), Some(major.to_string().as_str()));
    c.sql("pg-1", "CREATE TABLE t AS SELECT 1 AS x").unwrap();
    wait_until(&format!("row on the PG {major} replica"), Duration::from_secs(60), || {
        c.sql("pg-2", "SELECT x FROM t").as_deref() == Ok("1")
    });
    let st = c.node_status("pg-2");
    assert_eq!(st["replication"]["state"], "streaming", "{st}");
    (c, out)
}

/// Switch over to pg-2 with only Debian's pg_rewind 15 installed: pgrepl
/// checks from pg_control and the new timeline's history that pg-1 needs
/// no rewind, and pg-1 follows pg-2.
fn switch_over_without_matching_pg_rewind(c: &Cluster) {
    let out = c.ok(&["switchover", "--yes"]);
    assert!(out.contains("pg-1: its last WAL record") && out.contains("no rewind is needed"), "{out}");
    assert!(out.contains("switchover complete: pg-2 is primary (timeline 1 -> 2)"), "{out}");
    c.sql("pg-2", "INSERT INTO t VALUES (2)").unwrap();
    wait_until("pg-1 replays pg-2's write", Duration::from_secs(60), || {
        c.sql("pg-1", "SELECT count(*) FROM t").as_deref() == Ok("2")
    });
    assert!(c.streaming("pg-1"));
}

/// Fail pg-2 over back to pg-1 and write there: the promotion half of the flow.
fn fail_back_to_pg1(c: &Cluster) {
    let out = c.ok(&["failover", "--stop-primary", "--yes"]);
    assert!(out.contains("failover complete: pg-1 is primary"), "{out}");
    c.sql("pg-1", "INSERT INTO t VALUES (3)").unwrap();
    assert_eq!(c.node_status("pg-1")["timeline"], 3);
}

#[test]
fn postgresql_11_up_clone_and_promote_with_recovery_conf() {
    let (c, _) = up_on_major(11, "");
    // The old layout, as seed 001 describes it for PostgreSQL 11.
    let recovery = std::fs::read_to_string(c.data_dir("pg-2").join("recovery.conf")).unwrap();
    assert!(
        recovery.contains("standby_mode = 'on'")
            && recovery.contains("trigger_file = ")
            && recovery.contains("primary_slot_name = 'pg_2'"),
        "{recovery}"
    );
    assert!(!c.data_dir("pg-2").join("standby.signal").exists());
    let conf = std::fs::read_to_string(c.data_dir("pg-1").join("postgresql.conf")).unwrap();
    assert!(conf.contains("wal_keep_segments = 10"), "{conf}");
    switch_over_without_matching_pg_rewind(&c);
    assert!(c.data_dir("pg-1").join("recovery.conf").is_file(), "the old primary follows with recovery.conf");
    fail_back_to_pg1(&c);
}

#[test]
fn postgresql_17_up_clone_with_builtin_base_backup_and_promote() {
    let (c, out) = up_on_major(17, "");
    assert!(out.contains("seeded 1 replica(s) from pg-1's fresh initdb"), "{out}");
    // Debian's pg_basebackup 15 cannot copy a 17 server; pgrepl's own does.
    let out = c.ok(&["reclone", "pg-2"]);
    assert!(out.contains("with pgrepl's built-in base backup"), "{out}");
    wait_until("pg-2 streams after the re-clone", Duration::from_secs(60), || c.streaming("pg-2"));
    assert!(c.data_dir("pg-2").join("standby.signal").is_file());
    assert!(!c.data_dir("pg-2").join("recovery.conf").exists());
    let conf = std::fs::read_to_string(c.data_dir("pg-1").join("postgresql.conf")).unwrap();
    assert!(conf.contains("wal_keep_size = "), "{conf}");
    switch_over_without_matching_pg_rewind(&c);
    fail_back_to_pg1(&c);
    // pg-2 was fenced by a clean stop and had not diverged: it rejoins as it
    // is, judged from pg_control and pg-1's timeline history.
    let out = c.ok(&["rejoin", "pg-2"]);
    assert!(out.contains("before the primary's history left it") && out.contains("no rewind is needed"), "{out}");
    wait_until("pg-2 streams from pg-1", Duration::from_secs(60), || c.streaming("pg-2"));
    assert_eq!(c.node_status("pg-2")["timeline"], 3);
}

#[test]
fn postgresql_17_rejoin_of_a_crashed_primary_without_pg_rewind_says_what_to_do() {
    let (c, _) = up_on_major(17, "");
    // pg-1 dies uncleanly and cannot restart; pg-2 is promoted. Only
    // pg_rewind could tell whether pg-1 diverged, and pg_rewind 17 is not
    // installed.
    let base = c.data_dir("pg-1").join("postgresql.base.conf");
    let original = std::fs::read_to_string(&base).unwrap();
    std::fs::write(&base, format!("{original}\nthis_setting_does_not_exist = 1\n")).unwrap();
    let pid = c.postmaster_pid("pg-1").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    c.ok(&["failover", "--stop-primary", "--yes"]);
    let before = crate::harness::snapshot(&c.data_dir("pg-1"));
    let o = c.pgrepl(&["rejoin", "pg-1"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("pg-1 cannot follow pg-2 as it is: it was not shut down cleanly")
            && err.contains("rejoin needs pg_controldata and pg_rewind of PostgreSQL 17")
            && err.contains("`pgrepl reclone pg-1`"),
        "{err}"
    );
    assert_eq!(crate::harness::snapshot(&c.data_dir("pg-1")), before, "the data dir was touched");
}
