//! Durability modes on a live cluster: `sync` degrades loudly instead of
//! hanging, `sync-strict` blocks and says why, and failover in the sync
//! modes promotes only a synchronous standby.

use std::process::Command;
use std::time::Duration;

use crate::harness::{http_get, text, wait_until, Cluster};

const T: Duration = Duration::from_secs(60);

fn cluster(replicas: usize, durability: &str) -> Cluster {
    Cluster::with_replication(
        replicas,
        &format!("durability = \"{durability}\"\n"),
        "\n[monitor]\ninterval = \"200ms\"\n\n[failover]\nmode = \"manual\"\n",
    )
}

fn durability_state(c: &Cluster) -> String {
    c.status()["durability"]["state"].as_str().unwrap_or("").to_string()
}

#[test]
fn sync_keeps_committing_as_standbys_stop_and_reports_the_degrade() {
    let c = cluster(2, "sync");
    c.up();
    c.sql("pg-1", "CREATE TABLE t (x int)").unwrap();
    wait_until("synchronous standbys in place", T, || {
        c.sql("pg-1", "SHOW synchronous_standby_names").is_ok_and(|s| s.starts_with("ANY 1"))
    });
    wait_until("a standby reports sync", T, || c.node_status("pg-2")["replication"]["sync_state"] == "quorum");
    // Patroni's /sync and /async, for a load balancer that wants them.
    wait_until("/sync answers 200 on a synchronous standby", T, || {
        http_get(c.ports[1] + 10000, "/sync").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(http_get(c.ports[1] + 10000, "/async").map(|(code, _)| code), Some(503));
    c.ok(&["down", "pg-3"]);
    c.sql("pg-1", "INSERT INTO t VALUES (1)").unwrap();
    c.ok(&["down", "pg-2"]);
    // This commit may wait until the supervisor degrades to async, then returns.
    c.sql("pg-1", "INSERT INTO t VALUES (2)").unwrap();
    wait_until("status says degraded", T, || durability_state(&c) == "degraded");
    let st = c.status();
    assert!(st["durability"]["message"].as_str().unwrap().starts_with("DEGRADED to asynchronous: 0 of 1"), "{st}");
    let o = c.pgrepl(&["check"]);
    assert_eq!(o.status.code(), Some(2), "two replicas are stopped: {}", text(&o.stdout));
    assert!(text(&o.stdout).contains("DEGRADED to asynchronous"), "{}", text(&o.stdout));
    wait_until("metrics say degraded", T, || {
        http_get(c.ports[0] + 10000, "/metrics")
            .is_some_and(|(_, b)| b.contains("pgrepl_durability_state{mode=\"sync\",state=\"degraded\"} 1"))
    });
    c.ok(&["up", "pg-2"]);
    wait_until("synchronous again", T, || durability_state(&c) == "ok");
}

#[test]
fn sync_strict_blocks_commits_without_a_standby_and_says_why() {
    let c = cluster(1, "sync-strict");
    c.up();
    c.sql("pg-1", "CREATE TABLE t (x int)").unwrap();
    wait_until("strict list in place", T, || {
        c.sql("pg-1", "SHOW synchronous_standby_names").as_deref() == Ok("ANY 1 (\"pg-2\")")
    });
    c.ok(&["down", "pg-2"]);
    let mut commit = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-c")
        .arg(c.config())
        .args(["psql", "pg-1", "--", "-c", "INSERT INTO t VALUES (42)"])
        .spawn()
        .unwrap();
    wait_until("status explains the block", T, || durability_state(&c) == "blocked");
    let st = c.status();
    assert_eq!(st["durability"]["message"].as_str().unwrap(), "commits blocked: 0 of 1 synchronous standbys streaming (sync-strict never degrades); start a standby to release them");
    assert!(commit.try_wait().unwrap().is_none(), "the commit returned without a synchronous standby");
    c.ok(&["up", "pg-2"]);
    let status = commit.wait().unwrap();
    assert!(status.success());
    assert_eq!(c.sql("pg-1", "SELECT count(*) FROM t WHERE x = 42").unwrap(), "1");
}

#[test]
fn failover_in_sync_mode_refuses_a_standby_that_was_not_synchronous() {
    let c = cluster(2, "sync");
    c.up();
    wait_until("both standbys synchronous", T, || {
        c.sql("pg-1", "SHOW synchronous_standby_names").as_deref() == Ok("ANY 1 (\"pg-2\", \"pg-3\")")
    });
    c.ok(&["down", "pg-3"]);
    wait_until("only pg-2 synchronous", T, || {
        c.sql("pg-1", "SHOW synchronous_standby_names").as_deref() == Ok("ANY 1 (\"pg-2\")")
    });
    wait_until("sync set recorded", T, || {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(c.path("data/pgrepl.state.json")).unwrap()).unwrap();
        s["sync_set"] == serde_json::json!(["pg-2"])
    });
    c.ok(&["down", "pg-1"]);
    c.ok(&["up", "pg-3"]);
    c.ok(&["down", "pg-2"]);
    let o = c.pgrepl(&["failover", "--yes"]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("no running standby was synchronous (last synchronous set: pg-2)"),
        "{}",
        text(&o.stderr)
    );
    let out = c.ok(&["failover", "--allow-data-loss", "--yes"]);
    assert!(out.contains("promoting pg-3"), "{out}");
}

#[test]
fn slot_of_a_removed_standby_is_dropped_and_a_lost_slot_asks_for_a_reclone() {
    let c = Cluster::with_replication(
        2,
        "max_slot_wal_keep_size = \"32MB\"\nwal_keep_size = \"16MB\"\n",
        "\n[failover]\nmode = \"manual\"\n",
    );
    c.up();
    let slots = |c: &Cluster| {
        c.sql("pg-1", "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots").unwrap()
    };
    assert_eq!(slots(&c), "pg_2,pg_3");

    // pg-2 stays away while more WAL than the bound is written: its slot is lost,
    // pg_wal stays bounded, and status names the fix.
    c.ok(&["down", "pg-2"]);
    c.churn_wal("pg-1", 8);
    wait_until("pg_2 lost", T, || {
        c.sql("pg-1", "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'pg_2'").as_deref() == Ok("lost")
    });
    let wal_mb: u64 = c.sql("pg-1", "SELECT (sum(size) / 1048576)::int8 FROM pg_ls_waldir()").unwrap().parse().unwrap();
    assert!(wal_mb <= 32 + 16 + 64, "pg_wal grew to {wal_mb} MB past the 32MB slot bound");
    let o = c.pgrepl(&["check"]);
    assert!(
        text(&o.stdout).contains("slot pg_2 is lost: standby pg-2 needs a re-clone (`pgrepl reclone pg-2`)"),
        "{}",
        text(&o.stdout)
    );
    c.ok(&["reclone", "pg-2"]);
    wait_until("pg-2 back", T, || c.streaming("pg-2"));

    // pg-3 leaves the config: its slot goes at the next up.
    c.ok(&["down"]);
    let body = std::fs::read_to_string(c.config()).unwrap();
    let cut = body.find(&format!("name = \"pg-3\"\nport = {}", c.ports[2])).unwrap();
    let start = body[..cut].rfind("[[node]]").unwrap();
    let end = body[cut..].find("\n\n").map_or(body.len(), |e| cut + e);
    c.write("pgrepl.toml", &format!("{}{}", &body[..start], &body[end..]));
    c.up();
    assert_eq!(slots(&c), "pg_2");
}

#[test]
fn with_auto_reclone_a_standby_whose_slot_was_lost_comes_back_streaming() {
    let c = Cluster::with_replication(
        1,
        "max_slot_wal_keep_size = \"32MB\"\nwal_keep_size = \"16MB\"\nauto_reclone = true\n",
        "\n[monitor]\ninterval = \"200ms\"\n",
    );
    c.up();
    c.ok(&["down", "pg-2"]);
    // Hold the move lock while the WAL churns, as a running move command
    // would: the supervisor waits, and then acts once on a settled state.
    let lock_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(c.path("data/run/move.lock"))
        .unwrap();
    let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    c.churn_wal("pg-1", 8);
    wait_until("pg_2 lost", T, || {
        c.sql("pg-1", "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'pg_2'").as_deref() == Ok("lost")
    });
    drop(lock);
    // The supervisor re-clones it by itself and leaves it stopped as the user did.
    wait_until("the automatic re-clone finished", T, || {
        std::fs::read_to_string(c.path("data/pgrepl.log"))
            .unwrap_or_default()
            .contains("pg-2 re-cloned; it stays stopped as you left it")
    });
    assert_eq!(c.node_status("pg-2")["state"], "stopped", "{}", c.supervisor_log());
    c.ok(&["up", "pg-2"]);
    crate::harness::wait_until_explained("pg-2 streaming", T, || c.streaming("pg-2"), || c.supervisor_log());
    assert_eq!(c.sql("pg-2", "SELECT count(*) FROM f7").unwrap(), "100000");
}

#[test]
fn sync_strict_failover_after_kill_9_loses_no_acknowledged_commit_five_times() {
    let c = Cluster::with_replication(
        2,
        "durability = \"sync-strict\"\n",
        &format!("{}\n[monitor]\ninterval = \"200ms\"\n\n[failover]\nmode = \"manual\"\n", crate::moves::APP_DB),
    );
    c.write("secrets/app.password", "app-secret\n");
    c.up();
    c.sql_db("pg-1", "app", "CREATE TABLE w (id bigint PRIMARY KEY); ALTER TABLE w OWNER TO app").unwrap();
    wait_until("strict list in place", T, || {
        c.sql("pg-1", "SHOW synchronous_standby_names").is_ok_and(|s| s.starts_with("ANY 1"))
    });
    let w = crate::moves::Writer::start(&c);
    for run in 1..=5 {
        w.wait_more(30);
        let primary = c.status()["primary"].as_str().unwrap().to_string();
        let pid = c.postmaster_pid(&primary).unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        let out = c.ok(&["failover", "--stop-primary", "--yes"]);
        assert!(out.contains("failover complete"), "run {run}: {out}");
        let new = c.status()["primary"].as_str().unwrap().to_string();
        assert_ne!(new, primary);
        w.wait_more(30);
        // Every id acknowledged so far is on the new primary.
        let acked = w.acked.lock().unwrap().clone();
        let present: std::collections::HashSet<i64> =
            c.sql_db(&new, "app", "SELECT id FROM w").unwrap().lines().map(|l| l.parse().unwrap()).collect();
        let lost: Vec<&i64> = acked.iter().filter(|id| !present.contains(id)).collect();
        assert!(lost.is_empty(), "run {run}: {} acknowledged commits lost on failover to {new}: {lost:?}", lost.len());
        // Bring the old primary back so the next run has two standbys again.
        c.ok(&["rejoin", &primary]);
        wait_until("three nodes again", T, || c.streaming(&primary));
        // Failed once under full-suite load (not reproduced alone): the
        // supervisor's log says what the durability task saw.
        crate::harness::wait_until_explained(
            "strict list includes both standbys",
            T,
            || c.sql(&new, "SHOW synchronous_standby_names").is_ok_and(|s| s.contains(&format!("\"{primary}\""))),
            || format!("run {run}, now {:?}\n{}", c.sql(&new, "SHOW synchronous_standby_names"), c.supervisor_log()),
        );
    }
    w.finish();
}

/// CI found a new primary in sync-strict still running with the list it
/// inherited (pg_rewind and base backups copy postgresql.auto.conf) for a
/// minute. Whatever a standby inherited, the promotion itself sets the list
/// before the node accepts a write: with a monitor interval of 5 s the
/// durability task has not looked yet when `failover` returns.
#[test]
fn a_promotion_in_sync_strict_sets_the_standby_list_before_the_first_write() {
    let c = Cluster::with_replication(
        2,
        "durability = \"sync-strict\"\n",
        "\n[monitor]\ninterval = \"5s\"\n\n[failover]\nmode = \"manual\"\n",
    );
    c.up();
    // What a clone of a primary that ran async would carry.
    c.sql("pg-2", "ALTER SYSTEM SET synchronous_standby_names = ''").unwrap();
    c.sql("pg-2", "SELECT pg_reload_conf()").unwrap();
    wait_until("pg-2 runs with the empty list", T, || {
        c.sql("pg-2", "SHOW synchronous_standby_names").as_deref() == Ok("")
    });
    let pid = c.postmaster_pid("pg-1").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let out = c.ok(&["failover", "--to", "pg-2", "--stop-primary", "--yes"]);
    assert!(out.contains("failover complete"), "{out}");
    assert_eq!(
        c.sql("pg-2", "SHOW synchronous_standby_names").unwrap(),
        "ANY 1 (\"pg-1\", \"pg-3\")",
        "the new primary acknowledges commits no standby holds\n{}",
        c.supervisor_log()
    );
}

/// Fault testing found `up`, `down`, `up` never returning in the sync modes:
/// `synchronous_standby_names` survives in postgresql.auto.conf, so the
/// primary's bootstrap SQL waited for a standby that starts only after it.
#[test]
fn up_down_up_returns_in_sync_strict_because_pgrepl_never_waits_for_a_standby() {
    let c = cluster(1, "sync-strict");
    c.up();
    wait_until("strict list in place", T, || {
        c.sql("pg-1", "SHOW synchronous_standby_names").as_deref() == Ok("ANY 1 (\"pg-2\")")
    });
    c.ok(&["down"]);
    let o = c.pgrepl_within(&["up", "--detach"], Duration::from_secs(60)).unwrap_or_else(|| {
        panic!("the second `up` hung for 60 s\n{}", c.supervisor_log());
    });
    assert!(o.status.success(), "second up failed: {}", text(&o.stderr));
    assert!(c.streaming("pg-2"));
}
