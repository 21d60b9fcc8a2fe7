//! pgrepl's own base backup on Debian's PostgreSQL 15, chosen explicitly,
//! so it is checked on the same server pg_basebackup is: a standby copied
//! with it holds the primary's data, streams, and is owned by the OS user.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::harness::{is_root, wait_until, Cluster};

const T: Duration = Duration::from_secs(60);

#[test]
fn builtin_base_backup_copies_the_data_without_slots() {
    // Without slots, the copy holds its WAL with a temporary slot on its own
    // connection; the primary has recycled WAL past wal_keep_size before it.
    let c = Cluster::with_replication(
        1,
        "clone_method = \"builtin\"\nslots = false\nwal_keep_size = \"16MB\"\n",
        "\n[failover]\nmode = \"manual\"\n",
    );
    // A new cluster's replica is seeded; the re-clone below takes the base backup.
    c.up();
    c.sql("pg-1", "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 300000) g").unwrap();
    c.churn_wal("pg-1", 3);
    let want = c.sql("pg-1", "SELECT count(*) || ':' || md5(string_agg(h, ',' ORDER BY g)) FROM big").unwrap();

    let out = c.ok(&["reclone", "pg-2"]);
    assert!(out.contains("pg-2: cloning from pg-1") && out.contains("with pgrepl's built-in base backup"), "{out}");
    wait_until("pg-2 streams after the re-clone", T, || c.streaming("pg-2"));
    assert_eq!(c.sql("pg-2", "SELECT count(*) || ':' || md5(string_agg(h, ',' ORDER BY g)) FROM big").unwrap(), want);
    c.sql("pg-1", "INSERT INTO big VALUES (0, 'after')").unwrap();
    wait_until("a new row reaches pg-2", T, || {
        c.sql("pg-2", "SELECT h FROM big WHERE g = 0").as_deref() == Ok("after")
    });
    // The temporary slot went with the backup's connection; no slot is left.
    assert_eq!(c.sql("pg-1", "SELECT count(*) FROM pg_replication_slots").unwrap(), "0");
    if is_root() {
        let pg_uid = nix::unistd::User::from_name("postgres").unwrap().unwrap().uid.as_raw();
        for f in ["PG_VERSION", "global/pg_control", "base", "pg_wal"] {
            let m = std::fs::symlink_metadata(c.data_dir("pg-2").join(f)).unwrap();
            assert_eq!(m.uid(), pg_uid, "{f} is not owned by postgres");
        }
    }
    let mode = std::fs::metadata(c.data_dir("pg-2")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// A new cluster's replicas start from copies of the primary's fresh initdb
/// (no base backup of a running primary) and stream the bootstrap from it.
/// Proved the way an operator would: they stream, hold every bootstrap
/// object (roles, databases, schema rows), have the primary's system
/// identifier and checksums, and pass pg_amcheck, tables and indexes.
#[test]
fn a_new_clusters_replicas_are_seeded_from_the_fresh_initdb_and_are_sound() {
    let schema = "CREATE TABLE t (id int PRIMARY KEY, v text);\nINSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;\nCREATE INDEX ON t (v);\n";
    let c = Cluster::with_extra(
        2,
        "\n[[database]]\nname = \"app\"\nowner = \"app\"\nowner_password_file = \"secrets/app.password\"\nschema = [\"app.sql\"]\n\n[[role]]\nname = \"watcher\"\nin_roles = [\"pg_monitor\"]\n",
    );
    c.write("app.sql", schema);
    c.write("secrets/app.password", "app-secret\n");
    let out = c.up();
    assert!(out.contains("seeded 2 replica(s) from pg-1's fresh initdb (no base backup needed)"), "{out}");
    assert!(!out.contains("cloning from"), "{out}");
    c.sql_db("pg-1", "app", "CREATE EXTENSION amcheck").unwrap();
    let lsn = c.sql("pg-1", "SELECT pg_current_wal_lsn()").unwrap();
    let want = c.sql_db("pg-1", "app", "SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM t").unwrap();
    let sysid = |n: &str| c.sql(n, "SELECT system_identifier FROM pg_control_system()").unwrap();
    for n in ["pg-2", "pg-3"] {
        wait_until(&format!("{n} streams and replayed the bootstrap"), T, || {
            c.streaming(n) && c.sql(n, &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'")).as_deref() == Ok("t")
        });
        assert_eq!(
            c.sql_db(n, "app", "SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM t").unwrap(),
            want
        );
        assert_eq!(c.sql(n, "SELECT pg_has_role('watcher', 'pg_monitor', 'member')").unwrap(), "t");
        assert_eq!(c.sql(n, "SHOW data_checksums").unwrap(), "on");
        assert_eq!(sysid(n), sysid("pg-1"));
        // Every table and index of the database, heap against index.
        let amcheck = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_amcheck")
            .arg("-h")
            .arg(c.path("data/sockets"))
            .args(["-p", &c.ports[if n == "pg-2" { 1 } else { 2 }].to_string(), "-U", "postgres", "-d", "app"])
            .arg("--heapallindexed")
            .output()
            .unwrap();
        assert!(
            amcheck.status.success(),
            "pg_amcheck on {n}: {}{}",
            crate::harness::text(&amcheck.stdout),
            crate::harness::text(&amcheck.stderr)
        );
    }
}
