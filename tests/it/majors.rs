//! The core flow on another PostgreSQL major, live: PostgreSQL 11 uses the
//! old layout (recovery.conf, wal_keep_segments, pg_ctl promote).
//! `scripts/install-deps.sh` puts its server binaries in /opt/pgrepl/postgresql/11.

use std::time::Duration;

use crate::harness::{wait_until, Cluster};

const PG11: &str = "/opt/pgrepl/postgresql/11/bin";

#[test]
fn postgresql_11_up_clone_and_promote_with_recovery_conf() {
    assert!(
        std::path::Path::new(PG11).join("postgres").is_file(),
        "PostgreSQL 11 binaries missing in {PG11}: run `sudo bash scripts/install-deps.sh`"
    );
    let c = Cluster::with_extra(1, "\n[failover]\nmode = \"manual\"\n");
    let body = std::fs::read_to_string(c.config())
        .unwrap()
        .replace("data_root = \"data\"", &format!("data_root = \"data\"\npostgres_bin = \"{PG11}\""));
    c.write("pgrepl.toml", &body);
    let out = c.up();
    assert!(out.contains("(PostgreSQL 11."), "{out}");
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
    assert_eq!(c.sql("pg-1", "SHOW server_version_num").unwrap().get(..2), Some("11"));

    c.sql("pg-1", "CREATE TABLE t AS SELECT 1 AS x").unwrap();
    wait_until("row on the PG 11 replica", Duration::from_secs(60), || {
        c.sql("pg-2", "SELECT x FROM t").as_deref() == Ok("1")
    });
    let st = c.node_status("pg-2");
    assert_eq!(st["replication"]["state"], "streaming", "{st}");

    let out = c.ok(&["failover", "--force"]);
    assert!(out.contains("failover complete: pg-2 is primary"), "{out}");
    c.sql("pg-2", "INSERT INTO t VALUES (2)").unwrap();
    assert_eq!(c.node_status("pg-2")["timeline"], 2);
}
