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
    let out = c.up();
    assert!(out.contains("pg-2: cloning from pg-1") && out.contains("with pgrepl's built-in base backup"), "{out}");
    c.sql("pg-1", "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 300000) g").unwrap();
    c.churn_wal("pg-1", 3);
    let want = c.sql("pg-1", "SELECT count(*) || ':' || md5(string_agg(h, ',' ORDER BY g)) FROM big").unwrap();

    c.ok(&["reclone", "pg-2"]);
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
