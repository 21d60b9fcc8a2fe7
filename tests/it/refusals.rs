//! Unsafe situations: each is refused with its own exit code and a message
//! that names the problem and the fix, and nothing on disk changes.

use std::net::TcpListener;
use std::time::Duration;

use crate::harness::{is_root, snapshot, text, wait_until, Cluster};

fn fails(c: &Cluster, args: &[&str]) -> (i32, String) {
    let o = c.pgrepl(args);
    assert!(!o.status.success(), "pgrepl {args:?} succeeded:\n{}", text(&o.stdout));
    (o.status.code().unwrap_or(-1), text(&o.stderr))
}

#[test]
fn replica_dir_of_another_cluster_is_refused_untouched_then_recloned_aside() {
    let c = Cluster::new(1);
    c.up();
    c.ok(&["down"]);
    // A data dir of a different cluster where pg-2's should be.
    let other = Cluster::new(0);
    other.up();
    other.ok(&["down"]);
    let pg2 = c.data_dir("pg-2");
    std::fs::remove_dir_all(&pg2).unwrap();
    std::fs::rename(other.data_dir("pg-1"), &pg2).unwrap();
    let before = snapshot(&pg2);
    let (code, err) = fails(&c, &["up", "--detach"]);
    assert_eq!(code, 5, "{err}");
    let theirs = pgrepl::system_id(&pg2).unwrap();
    let ours = pgrepl::system_id(&c.data_dir("pg-1")).unwrap();
    assert!(err.contains(&format!("its system identifier is {theirs}, the primary's (pg-1) is {ours}")), "{err}");
    assert!(err.contains("pgrepl up --reclone pg-2"), "{err}");
    assert_eq!(snapshot(&pg2), before, "the refused dir changed");
    assert!(c.processes().is_empty(), "a refused up left processes running");

    // The fix it names works, and keeps the old dir.
    c.ok(&["up", "--detach", "--reclone", "pg-2"]);
    wait_until("pg-2 streaming", Duration::from_secs(60), || c.streaming("pg-2"));
    let aside: Vec<_> = std::fs::read_dir(c.path("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pg-2.old-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(snapshot(&aside[0].path()).len(), before.len());
}

#[test]
fn non_postgres_dir_is_refused() {
    let c = Cluster::new(1);
    c.write("data/pg-2/notes.txt", "my thesis\n");
    let (code, err) = fails(&c, &["up", "--detach"]);
    assert_eq!(code, 5);
    assert!(err.contains("is not empty and is not a PostgreSQL data dir"), "{err}");
    assert_eq!(std::fs::read_to_string(c.path("data/pg-2/notes.txt")).unwrap(), "my thesis\n");
    assert!(!c.data_dir("pg-1").exists(), "the primary was created before the refusal");
}

#[test]
fn data_dir_of_another_major_is_refused() {
    let c = Cluster::new(0);
    c.write("data/pg-1/PG_VERSION", "11\n");
    c.write("data/pg-1/global/pg_control", "12345678rest-of-control-file");
    let (code, err) = fails(&c, &["up", "--detach"]);
    assert_eq!(code, 5);
    assert!(err.contains("holds a PostgreSQL 11 cluster, but the binaries found are PostgreSQL"), "{err}");
}

#[test]
fn port_held_by_a_stranger_is_refused_and_the_stranger_untouched() {
    let c = Cluster::new(1);
    let stranger = TcpListener::bind(("127.0.0.1", c.ports[1])).unwrap();
    let (code, err) = fails(&c, &["up", "--detach"]);
    assert_eq!(code, 4);
    assert_eq!(
        err.trim(),
        format!("pgrepl: error: port {} on 127.0.0.1 (node pg-2) is already in use by another process; pgrepl leaves that process alone. Stop it, or give node pg-2 another port in {}:14", c.ports[1], c.config().display())
    );
    assert!(stranger.local_addr().is_ok());
    assert!(!c.data_dir("pg-1").exists());
}

#[test]
fn missing_binaries_name_what_was_searched() {
    let c = Cluster::with_extra(0, "");
    let body = std::fs::read_to_string(c.config())
        .unwrap()
        .replace("data_root = \"data\"", "data_root = \"data\"\npostgres_bin = \"/nonexistent/pg/bin\"");
    c.write("pgrepl.toml", &body);
    let (code, err) = fails(&c, &["up"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("postgres_bin = /nonexistent/pg/bin is not a usable PostgreSQL bindir: missing postgres, initdb"),
        "{err}"
    );
}

#[test]
fn data_root_the_os_user_cannot_reach_is_refused_before_anything_is_created() {
    if !is_root() {
        eprintln!("skipped: only meaningful when pgrepl runs as root");
        return;
    }
    let c = Cluster::new(0);
    let locked = c.path("home");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let body =
        std::fs::read_to_string(c.config()).unwrap().replace("data_root = \"data\"", "data_root = \"home/data\"");
    c.write("pgrepl.toml", &body);
    let (code, err) = fails(&c, &["up"]);
    assert_eq!(code, 6);
    assert!(
        err.contains(&format!(
            "directory {} (mode 700) does not let it in. Fix: `chmod o+x {}`",
            locked.display(),
            locked.display()
        )),
        "{err}"
    );
    assert!(!locked.join("data").exists());
}

#[test]
fn unreachable_primary_during_clone_gives_up_at_the_deadline() {
    let c = Cluster::new(1);
    let body =
        std::fs::read_to_string(c.config()).unwrap().replace("clone_timeout = \"20s\"", "clone_timeout = \"2s\"");
    c.write("pgrepl.toml", &body);
    let (code, err) = fails(&c, &["up", "pg-2"]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("could not reach the primary pg-1"), "{err}");
    assert!(!c.data_dir("pg-2").exists());
}

#[test]
fn wrong_replication_password_is_an_authentication_failure() {
    let c = Cluster::new(1);
    c.ok(&["up", "--detach", "pg-1"]);
    // Same cluster seen from another host's config, with the wrong password.
    let body = std::fs::read_to_string(c.config())
        .unwrap()
        .replace("data_root = \"data\"", "data_root = \"other\"")
        .replace("secrets/replicator.password", "secrets/wrong.password");
    c.write("other.toml", &body);
    c.write("secrets/wrong.password", "not-the-password\n");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["-c", "other.toml", "up", "pg-2"])
        .current_dir(c.dir.path())
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(8), "{err}");
    assert!(
        err.contains("rejected the replication login as `replicator`")
            && err.contains("password authentication failed"),
        "{err}"
    );
}

/// Fault testing found a replica `data_dir` pointing at another cluster's
/// dir refused on a fresh cluster with exit 7 ("cannot check which cluster
/// … connecting to pg-1"): it is an unsafe data dir, exit 5.
#[test]
fn replica_dir_of_another_cluster_on_a_fresh_cluster_is_exit_5_untouched() {
    let other = Cluster::new(0);
    other.up();
    other.ok(&["down"]);
    let theirs = pgrepl::system_id(&other.data_dir("pg-1")).unwrap();
    let c = Cluster::new(1);
    let body = std::fs::read_to_string(c.config()).unwrap();
    let dir = other.data_dir("pg-1");
    let body = body.replacen(
        &format!("port = {}\n", c.ports[1]),
        &format!("port = {}\ndata_dir = \"{}\"\n", c.ports[1], dir.display()),
        1,
    );
    c.write("pgrepl.toml", &body);
    let before = snapshot(&dir);
    let (code, err) = fails(&c, &["up", "--detach"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains(&format!("its system identifier is {theirs}, the primary's (pg-1) is none yet")), "{err}");
    assert_eq!(snapshot(&dir), before);
    assert!(!c.data_dir("pg-1").exists(), "nothing was created before the refusal");
}

/// An unknown node name is a usage error (exit 64) in every command.
#[test]
fn an_unknown_node_name_is_exit_64_in_every_command() {
    let c = Cluster::new(1);
    for args in [
        &["switchover", "--to", "pg-9"][..],
        &["failover", "--to", "pg-9"],
        &["rejoin", "pg-9"],
        &["reclone", "pg-9"],
        &["psql", "pg-9"],
        &["up", "pg-9"],
        &["up", "--reclone", "pg-9"],
        &["down", "pg-9"],
        &["restart", "pg-9"],
    ] {
        let (code, err) = fails(&c, args);
        assert_eq!(code, 64, "pgrepl {args:?}: {err}");
        assert!(err.contains("no node named `pg-9`"), "pgrepl {args:?}: {err}");
    }
    assert!(!c.path("data").exists());
}

/// A Patroni user's habits: `--force` only skips the prompt in patronictl,
/// so pgrepl refuses it with the two flags that say what they do, and moves
/// run from a script without `--yes` refuse rather than act unasked.
#[test]
fn moves_ask_first_and_force_names_the_flags_that_replaced_it() {
    let c = Cluster::new(1);
    let (code, err) = fails(&c, &["failover", "--force"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--stop-primary") && err.contains("--yes"), "{err}");
    for args in [&["failover"][..], &["switchover"], &["reclone", "pg-2", "--discard"]] {
        let (code, err) = fails(&c, args);
        assert_eq!(code, 64, "pgrepl {args:?}: {err}");
        assert!(err.contains("no terminal is attached; add --yes"), "pgrepl {args:?}: {err}");
    }
    assert!(!c.path("data").exists(), "nothing was touched");
}

/// `pgrepl validate` (like `nginx -t`): the config and every check `up`
/// makes, all problems at once with their place in the config, exit 0 or
/// 2, nothing changed; on a running cluster its own ports are no problem.
#[test]
fn validate_reports_every_problem_at_once_and_passes_a_running_cluster() {
    let c = Cluster::new(2);
    let out = c.ok(&["validate"]);
    assert!(out.contains("OK (cluster it, 3 nodes"), "{out}");
    assert!(!c.path("data").exists(), "validate created the data root");

    c.write("data/pg-2/notes.txt", "my thesis\n");
    let stranger = TcpListener::bind(("127.0.0.1", c.ports[2])).unwrap();
    let (code, err) = fails(&c, &["validate"]);
    assert_eq!(code, 2, "{err}");
    let cfg = c.config().display().to_string();
    let text = std::fs::read_to_string(c.config()).unwrap();
    let line = |node: &str| text.lines().position(|l| l == format!("name = \"{node}\"")).unwrap() + 1;
    assert!(
        err.contains(&format!("{cfg}:{}: node pg-2: ", line("pg-2"))) && err.contains("not a PostgreSQL data dir"),
        "{err}"
    );
    assert!(err.contains(&format!("{cfg}:{}: port {}", line("pg-3"), c.ports[2])), "{err}");
    drop(stranger);
    std::fs::remove_dir_all(c.path("data")).unwrap();

    c.up();
    let out = c.ok(&["validate"]);
    assert!(out.contains("the cluster is running"), "{out}");
}
