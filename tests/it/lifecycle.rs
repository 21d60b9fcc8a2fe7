//! A cluster's life: up, replicate, survive a crash, restart idempotently, down.

use std::time::Duration;

use crate::harness::{is_root, wait_until, Cluster, PASSWORD};

const T: Duration = Duration::from_secs(60);

#[test]
fn primary_and_two_replicas_replicate_and_replicas_refuse_writes() {
    let c = Cluster::with_extra(2, "\n[[database]]\nname = \"chat\"\nowner = \"chat\"\nschema = [\"chat.sql\"]\n");
    c.write(
        "chat.sql",
        "CREATE TABLE messages (id int PRIMARY KEY, body text);\nINSERT INTO messages VALUES (0, 'seed');\n",
    );
    let out = c.up();
    assert!(out.contains("cluster it is up"), "{out}");
    assert!(out.contains("target_session_attrs=read-write"), "{out}");

    // Both replicas stream, as the primary sees them.
    let st = c.status();
    assert_eq!(st["primary"], "pg-1");
    for n in ["pg-2", "pg-3"] {
        let s = c.node_status(n);
        assert_eq!(s["role"], "replica", "{s}");
        assert_eq!(s["replication"]["state"], "streaming", "{s}");
    }
    assert_eq!(c.node_status("pg-1")["role"], "primary");

    // A write on the primary reaches both replicas.
    c.sql_db("pg-1", "chat", "INSERT INTO messages VALUES (1, 'hello')")
        .map(|_| ())
        .unwrap_or_else(|e| panic!("insert failed: {e}"));
    let q = "SELECT count(*) FROM messages WHERE id = 1";
    for n in ["pg-2", "pg-3"] {
        wait_until(&format!("row on {n}"), T, || c.sql_db(n, "chat", q).as_deref() == Ok("1"));
    }
    // A write on a replica fails as read-only.
    let err =
        c.sql_db("pg-2", "chat", "INSERT INTO messages VALUES (2, 'nope')").expect_err("replica accepted a write");
    assert!(err.contains("read-only transaction"), "{err}");

    // The schema ran as its owner.
    assert_eq!(
        c.sql_db("pg-1", "chat", "SELECT tableowner FROM pg_tables WHERE tablename = 'messages'").unwrap(),
        "chat"
    );
    // The replication role can replicate and nothing more.
    assert_eq!(
        c.sql("pg-1", "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = 'replicator'").unwrap(),
        "t|f"
    );

    // No password in any process's argv, in status, or in the log.
    for pid in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(pid.path().join("cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmd).contains(PASSWORD), "password in argv of pid {:?}", pid.file_name());
    }
    let status_text = c.ok(&["status"]) + &c.ok(&["status", "--json"]);
    assert!(!status_text.contains(PASSWORD));
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    assert!(!log.contains(PASSWORD));
    assert!(!out.contains(PASSWORD));
    // The passfile is 0600 and nothing under data_root but it holds the password.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let pf = std::fs::metadata(c.path("data/pgpass")).unwrap();
    assert_eq!(pf.permissions().mode() & 0o777, 0o600);
    let conf = std::fs::read_to_string(c.data_dir("pg-2").join("postgresql.conf")).unwrap();
    assert!(conf.contains("passfile="), "{conf}");
    assert!(!conf.contains(PASSWORD));
    // Data dirs are 0700, owned by the OS user PostgreSQL runs as.
    for n in ["pg-1", "pg-2", "pg-3"] {
        let md = std::fs::metadata(c.data_dir(n)).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700, "{n}");
        if is_root() {
            assert_ne!(md.uid(), 0, "{n} is owned by root");
        }
    }
}

#[test]
fn up_twice_is_idempotent_and_down_leaves_nothing_running() {
    let c = Cluster::with_extra(1, "\n[[database]]\nname = \"app\"\nschema = [\"app.sql\"]\n");
    c.write("app.sql", "CREATE TABLE runs (n int); INSERT INTO runs VALUES (1);\n");
    c.up();
    let sysid = std::fs::read(c.data_dir("pg-2").join("global/pg_control")).unwrap()[..8].to_vec();

    // With the supervisor running: `up` starts nothing new.
    let again = c.up();
    assert!(again.contains("already running"), "{again}");

    // After a full stop: `up` restarts without initdb, clone or schema.
    c.ok(&["down"]);
    let out = c.up();
    assert!(!out.contains("initdb"), "{out}");
    assert!(!out.contains("cloning"), "{out}");
    assert!(!out.contains("applied"), "{out}");
    assert_eq!(c.sql_db("pg-1", "app", "SELECT count(*) FROM runs").unwrap(), "1");
    assert_eq!(std::fs::read(c.data_dir("pg-2").join("global/pg_control")).unwrap()[..8].to_vec(), sysid);
    wait_until("pg-2 streaming after restart", T, || c.streaming("pg-2"));

    c.ok(&["down"]);
    assert!(c.processes().is_empty(), "processes left: {:?}", c.processes());
    for n in ["pg-1", "pg-2"] {
        assert!(!c.data_dir(n).join("postmaster.pid").exists(), "{n} still has a postmaster.pid");
    }
}

#[test]
fn killed_replica_postmaster_is_restarted_and_streams_again() {
    let c = Cluster::new(1);
    c.up();
    let old = c.postmaster_pid("pg-2").expect("pg-2 pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("pg-2 restarted with a new pid", T, || {
        c.postmaster_pid("pg-2").is_some_and(|p| p != old && crate::harness::alive(p))
    });
    wait_until("pg-2 streaming again", T, || c.streaming("pg-2"));
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    assert!(log.contains("pg-2: postgres") && log.contains("exited unexpectedly"), "{log}");
}

#[test]
fn stopping_and_starting_one_node_leaves_the_others_running() {
    let c = Cluster::new(2);
    c.up();
    c.ok(&["down", "pg-3"]);
    assert_eq!(c.node_status("pg-3")["state"], "stopped");
    assert!(c.streaming("pg-2"));
    c.ok(&["up", "pg-3"]);
    wait_until("pg-3 streaming", T, || c.streaming("pg-3"));
}

#[test]
fn interrupted_clone_is_redone_not_started() {
    let c = Cluster::new(1);
    c.up();
    c.ok(&["down"]);
    // What a clone killed midway leaves: a staging dir with part of a copy.
    std::fs::remove_dir_all(c.data_dir("pg-2")).unwrap();
    let staging = c.path("data/.pg-2.pgrepl-clone");
    std::fs::create_dir_all(staging.join("global")).unwrap();
    std::fs::write(staging.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(staging.join("backup_label"), "START WAL LOCATION: 0/2000028\n").unwrap();
    let out = c.up();
    assert!(out.contains("interrupted clone"), "{out}");
    assert!(!staging.exists());
    wait_until("pg-2 streaming", T, || c.streaming("pg-2"));
}

#[test]
fn killing_pgrepl_mid_clone_never_starts_the_half_copy() {
    let c = Cluster::new(1);
    // A primary with enough data that cloning it takes a moment.
    c.ok(&["up", "--detach", "pg-1"]);
    c.sql("pg-1", "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 1000000) g").unwrap();
    c.ok(&["down"]);
    let mut fg = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-c")
        .arg(c.config())
        .arg("up")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let staging = c.path("data/.pg-2.pgrepl-clone");
    wait_until("clone in progress", T, || staging.join("base").exists());
    fg.kill().unwrap();
    fg.wait().unwrap();
    // The copy was never renamed into place.
    assert!(!c.data_dir("pg-2").exists(), "half-copied dir was put in place");
    // The next `up` adopts the orphaned primary, redoes the clone, and streams.
    let out = c.up();
    assert!(out.contains("interrupted clone"), "{out}");
    wait_until("pg-2 streaming", T, || c.streaming("pg-2"));
    assert_eq!(c.sql("pg-2", "SELECT count(*) FROM big").unwrap(), "1000000");
    let basebackups = c
        .processes()
        .into_iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().starts_with("pg_basebackup"))
        .count();
    assert_eq!(basebackups, 0, "a pg_basebackup of the killed clone is still running");
}

#[test]
fn foreground_supervisor_prefixes_logs_and_sigterm_stops_replicas_then_primary() {
    let c = Cluster::new(1);
    let log = c.path("fg.log");
    let mut fg = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-c")
        .arg(c.config())
        .arg("up")
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("cluster up in the foreground", T, || c.path("data/run/ready").exists());
    assert!(c.streaming("pg-2"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(fg.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = fg.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.lines().any(|l| l.starts_with("[pg-1]") && l.contains("database system is ready to accept connections")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("[pg-2]") && l.contains("started streaming WAL")), "{out}");
    let replica_stopped = out.find("INFO  pg-2: stopped").expect("pg-2 stop line");
    // The last: a new cluster's primary also stops once while its replicas are seeded.
    let primary_stopped = out.rfind("INFO  pg-1: stopped").expect("pg-1 stop line");
    assert!(replica_stopped < primary_stopped, "the primary stopped before its replica:\n{out}");
    assert!(c.processes().is_empty(), "processes left: {:?}", c.processes());
}

#[test]
fn reload_applies_a_changed_config_and_restart_applies_the_rest_in_a_safe_order() {
    // Automatic failover with a short timeout: a restart of the primary must
    // not be taken for a crash.
    let c = Cluster::with_extra(1, "\n[monitor]\ninterval = \"200ms\"\n\n[failover]\nprimary_start_timeout = \"1s\"\n");
    c.up();
    let base = std::fs::read_to_string(c.config()).unwrap();
    let set = |extra: &str| {
        let body = base.replace("max_connections = 30\n", extra);
        c.write("pgrepl.toml", &format!("{body}\n[[database]]\nname = \"added\"\n"));
    };
    let pending = |c: &Cluster, n: &str| c.node_status(n)["pending_restart"].clone();

    // A reloadable setting applies at once; a restart-only one is named.
    set("max_connections = 40\nwork_mem = \"8MB\"\n");
    let out = c.ok(&["reload"]);
    assert!(
        out.contains("pg-1: reloaded; max_connections take effect only after a restart: `pgrepl restart pg-1`"),
        "{out}"
    );
    assert!(out.contains("created database added"), "{out}");
    for n in ["pg-1", "pg-2"] {
        assert_eq!(c.sql(n, "SHOW work_mem").unwrap(), "8MB", "{n}");
        assert_eq!(pending(&c, n), serde_json::json!(["max_connections"]), "{n}");
    }
    assert!(c.ok(&["status"]).contains("pg-1: restart pending for max_connections: run `pgrepl restart pg-1`"));
    wait_until("pgrepl_pending_restart in /metrics", T, || {
        crate::harness::http_get(c.ports[0] + 10000, "/metrics")
            .is_some_and(|(_, b)| b.contains("pgrepl_pending_restart{node=\"pg-1\"} 1\n"))
    });

    // Raising it: standbys first.
    let out = c.ok(&["restart"]);
    let (r2, r1) = (out.find("pg-2: restarting").unwrap(), out.find("pg-1: restarting").unwrap());
    assert!(r2 < r1, "a raise restarts the replica first:\n{out}");
    for n in ["pg-1", "pg-2"] {
        assert_eq!(c.sql(n, "SHOW max_connections").unwrap(), "40", "{n}");
        assert_eq!(pending(&c, n), serde_json::json!([]), "{n}");
    }

    // Lowering it: the primary first, or the standby would refuse to replay.
    set("max_connections = 30\n");
    c.ok(&["reload"]);
    let out = c.ok(&["restart"]);
    assert!(out.contains("the primary lowers max_connections: restarting it first"), "{out}");
    let (r2, r1) = (out.find("pg-2: restarting").unwrap(), out.find("pg-1: restarting").unwrap());
    assert!(r1 < r2, "a lowering restarts the primary first:\n{out}");
    wait_until("pg-2 streams after the restarts", T, || c.streaming("pg-2"));
    assert_eq!(c.sql("pg-2", "SHOW max_connections").unwrap(), "30");
    // No failover happened: same primary, same timeline.
    assert_eq!(c.status()["primary"], "pg-1");
    assert_eq!(c.node_status("pg-1")["timeline"], 1);
}

#[test]
fn two_ups_racing_on_a_fresh_data_root_give_one_cluster_and_a_clear_answer() {
    let c = Cluster::new(1);
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(c.config())
            .args(["up", "--detach"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for o in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        let err = crate::harness::text(&o.stderr);
        match o.status.code() {
            Some(0) => {}
            Some(64) => assert!(err.contains("another pgrepl supervisor"), "{err}"),
            other => panic!("a racing `up` failed with {other:?}: {err}"),
        }
    }
    wait_until("pg-2 streams", T, || c.streaming("pg-2"));
    let supervisors = c
        .processes()
        .into_iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|s| s.trim() == "pgrepl"))
        .count();
    assert_eq!(supervisors, 1, "one supervisor for the data root");
}

#[test]
fn down_leave_running_then_up_adds_a_replica_without_stopping_postgres() {
    let c = Cluster::with_extra(1, "\n[failover]\nmode = \"manual\"\n");
    c.up();
    c.sql("pg-1", "CREATE TABLE t AS SELECT 1 AS x").unwrap();
    let pids = (c.postmaster_pid("pg-1").unwrap(), c.postmaster_pid("pg-2").unwrap());
    let out = c.ok(&["down", "--leave-running"]);
    assert!(out.contains("PostgreSQL keeps running on pg-1, pg-2 without supervision"), "{out}");
    assert_eq!((c.postmaster_pid("pg-1").unwrap(), c.postmaster_pid("pg-2").unwrap()), pids);
    assert!(crate::harness::alive(pids.0) && crate::harness::alive(pids.1));
    c.sql("pg-1", "INSERT INTO t VALUES (2)").unwrap();

    // A third node joins the config; `up` takes the running ones over and clones it.
    let port = crate::harness::free_port();
    let body = std::fs::read_to_string(c.config()).unwrap();
    c.write("pgrepl.toml", &format!("{body}\n[[node]]\nname = \"pg-3\"\nport = {port}\n"));
    let out = c.up();
    assert!(out.contains("pg-3: cloning from pg-1"), "{out}");
    assert_eq!((c.postmaster_pid("pg-1").unwrap(), c.postmaster_pid("pg-2").unwrap()), pids, "postgres was restarted");
    wait_until("pg-3 streams", T, || c.streaming("pg-3"));
    assert_eq!(c.sql("pg-3", "SELECT count(*) FROM t").unwrap(), "2");
    // And a plain `down` still stops everything.
    c.ok(&["down"]);
    assert!(!crate::harness::alive(pids.0));
}

#[test]
fn reload_refuses_a_change_of_the_clusters_shape_and_changes_nothing() {
    let c = Cluster::with_extra(1, "\n[failover]\nmode = \"manual\"\n");
    c.up();
    let original = std::fs::read_to_string(c.config()).unwrap();
    let conf = c.data_dir("pg-2").join("postgresql.conf");
    let before = std::fs::read_to_string(&conf).unwrap();
    // A new node, and pg-2 moved to another port.
    let (p3, p2) = (crate::harness::free_port(), crate::harness::free_port());
    let body = original.replacen(&format!("port = {}\n", c.ports[1]), &format!("port = {p2}\n"), 1)
        + &format!("\n[[node]]\nname = \"pg-3\"\nport = {p3}\n");
    c.write("pgrepl.toml", &body);
    let o = c.pgrepl(&["reload"]);
    let err = crate::harness::text(&o.stderr);
    assert_eq!(o.status.code(), Some(11), "{err}");
    assert!(err.contains(&format!("node pg-2 runs on port {}, but the config now says {p2}", c.ports[1])), "{err}");
    assert!(err.contains("node pg-3 is new: add it without downtime with `pgrepl down --leave-running`"), "{err}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before, "pg-2's files were rewritten");
    assert!(c.streaming("pg-2"));
}

/// The first run, as a newcomer makes it: `init`, `up`, then the connection
/// string `up` printed, pasted into psql. It used to fail with
/// "fe_sendauth: no password supplied": no role had a TCP password.
#[test]
fn init_then_up_prints_a_connection_uri_that_works_as_printed() {
    let c = Cluster::empty();
    // `init --port P` uses P and P + 1 (and their api ports).
    let port = crate::harness::free_ports(2);
    let dir = c.path("fresh");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["init", "--nodes", "2", "--port", &port.to_string()])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", crate::harness::text(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("secrets/app.password")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let up = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["up", "--detach"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let out = crate::harness::text(&up.stdout);
    let down =
        || std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl")).arg("down").current_dir(&dir).output().unwrap();
    assert!(up.status.success(), "{out}\n{}", crate::harness::text(&up.stderr));
    let line = out.lines().find(|l| l.contains("connect: psql '")).unwrap_or_else(|| panic!("{out}"));
    let uri = line.split('\'').nth(1).unwrap();
    let password = std::fs::read_to_string(dir.join("secrets/app.password")).unwrap();
    assert!(!out.contains(password.trim()), "the password is never printed");
    assert!(uri.contains("passfile="), "{uri}");
    let psql = std::process::Command::new("psql")
        .arg(uri)
        .args(["-XtAc", "SELECT current_user || ' on ' || current_database() || ' ' || pg_is_in_recovery()"])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    let answer = crate::harness::text(&psql.stdout);
    down();
    assert!(psql.status.success(), "psql '{uri}': {}", crate::harness::text(&psql.stderr));
    assert_eq!(answer.trim(), "app on app false", "the URI reaches the writable primary");
}
