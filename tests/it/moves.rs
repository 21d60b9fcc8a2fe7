//! Moving the primary on a real cluster: switchover under load, failover
//! selection, rejoin of a diverged former primary, and the refusals.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use crate::harness::{snapshot, text, wait_until, Cluster};

const T: Duration = Duration::from_secs(90);
const MANUAL: &str = "\n[failover]\nmode = \"manual\"\n";
pub const APP_DB: &str =
    "\n[[database]]\nname = \"app\"\nowner = \"app\"\nowner_password_file = \"secrets/app.password\"\n";

fn cluster(replicas: usize) -> Cluster {
    let c = Cluster::with_extra(replicas, APP_DB);
    c.write("secrets/app.password", "app-secret\n");
    c
}

pub use crate::writer::Writer;

impl Writer {
    /// Through the cluster's nodes on loopback.
    pub fn start(c: &Cluster) -> Writer {
        let nodes: Vec<(String, u16)> = c.ports.iter().map(|p| ("127.0.0.1".to_string(), *p)).collect();
        Writer::start_at(&nodes, None)
    }
}

fn timeline(c: &Cluster, node: &str) -> i64 {
    c.node_status(node)["timeline"].as_i64().unwrap_or(-1)
}

fn primary(c: &Cluster) -> String {
    c.status()["primary"].as_str().unwrap().to_string()
}

#[test]
fn switchover_there_and_back_under_load_loses_no_acknowledged_write() {
    let c = cluster(2);
    c.up();
    c.sql_db("pg-1", "app", "CREATE TABLE w (id bigint PRIMARY KEY); ALTER TABLE w OWNER TO app").unwrap();
    let tl0 = timeline(&c, "pg-1");
    let w = Writer::start(&c);
    w.wait_more(50);

    let out = c.ok(&["switchover", "--to", "pg-2", "--yes"]);
    assert!(out.contains("switchover complete: pg-2 is primary"), "{out}");
    assert!(out.contains("writes were unavailable for"), "{out}");
    // A clean switchover leaves nothing to rewind; pgrepl checks rather than assumes.
    assert!(out.contains("pg-1: pg_rewind confirms no rewind is needed"), "{out}");
    assert_eq!(primary(&c), "pg-2");
    assert_eq!(timeline(&c, "pg-2"), tl0 + 1);
    w.wait_more(50);

    let out = c.ok(&["switchover", "--to", "pg-1", "--yes"]);
    assert!(out.contains("pg-2: pg_rewind confirms no rewind is needed"), "{out}");
    w.wait_more(50);
    let acked = w.finish();

    assert_eq!(primary(&c), "pg-1");
    assert_eq!(timeline(&c, "pg-1"), tl0 + 2, "one timeline per switchover");
    let present: HashSet<i64> =
        c.sql_db("pg-1", "app", "SELECT id FROM w").unwrap().lines().map(|l| l.parse().unwrap()).collect();
    let lost: Vec<&i64> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost: {lost:?}", lost.len());
    for n in ["pg-2", "pg-3"] {
        wait_until(&format!("{n} streaming from pg-1"), T, || c.streaming(n));
    }
    // Fault testing found every move followed by a spurious "restart
    // pending for recovery_target_timeline": following it costs an outage.
    let reload = c.ok(&["reload"]);
    assert!(!reload.contains("restart pending"), "{reload}");
    let table = c.ok(&["status"]);
    assert!(!table.contains("restart pending"), "{table}");
    for n in c.status()["nodes"].as_array().unwrap() {
        assert_eq!(n["pending_restart"], serde_json::json!([]), "{n}");
    }
    // Both moves are in the history, with PostgreSQL's own switch points.
    let h: serde_json::Value = serde_json::from_str(&c.ok(&["history", "--json"])).unwrap();
    let moves: Vec<(String, String, String, i64)> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert!(m["switch_lsn"].is_string(), "{m}");
            (
                m["kind"].as_str().unwrap().into(),
                m["from"].as_str().unwrap().into(),
                m["to"].as_str().unwrap().into(),
                m["timeline"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            ("switchover".into(), "pg-1".into(), "pg-2".into(), tl0 + 1),
            ("switchover".into(), "pg-2".into(), "pg-1".into(), tl0 + 2)
        ]
    );
    assert!(c.ok(&["history"]).contains("switchover  pg-2  pg-1"));
}

#[test]
fn switchover_to_a_stopped_or_lagging_target_is_refused_with_no_role_change() {
    let c = cluster(2);
    c.up();
    c.ok(&["down", "pg-3"]);
    let o = c.pgrepl(&["switchover", "--to", "pg-3", "--yes"]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr)
            .contains("switchover refused, nothing changed: pg-3 is not a streaming replica (state: stopped)"),
        "{}",
        text(&o.stderr)
    );
    c.ok(&["up", "pg-3"]);
    wait_until("pg-3 streaming", T, || c.streaming("pg-3"));

    c.sql("pg-3", "SELECT pg_wal_replay_pause()").unwrap();
    c.sql("pg-1", "CREATE TABLE filler AS SELECT g FROM generate_series(1, 100000) g").unwrap();
    wait_until("pg-3 behind", T, || {
        c.node_status("pg-3")["replication"]["lag_bytes"]["replay"].as_u64().is_some_and(|b| b > 1 << 20)
    });
    let o = c.pgrepl(&["switchover", "--to", "pg-3", "--max-lag", "1MB", "--yes"]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("more than --max-lag 1MB"), "{}", text(&o.stderr));
    assert_eq!(primary(&c), "pg-1");
    assert_eq!(c.node_status("pg-1")["role"], "primary");
    c.sql("pg-3", "SELECT pg_wal_replay_resume()").unwrap();
}

#[test]
fn failover_promotes_the_most_advanced_replica_and_the_rest_follow() {
    // Manual mode: nothing rejoins the fenced primary behind the test's back.
    // pg-2's paused replay keeps it from following until resumed; failover
    // waits start_timeout for it, then reports it: keep that short here.
    let c = Cluster::with_extra(2, &format!("{MANUAL}\n[supervisor]\nstart_timeout = \"15s\"\n"));
    c.up();
    c.sql("pg-2", "SELECT pg_wal_replay_pause()").unwrap();
    c.sql("pg-1", "CREATE TABLE after_pause AS SELECT 1 AS x").unwrap();
    wait_until("pg-3 replayed past pg-2", T, || {
        let s = c.status();
        let r = |i: usize| s["nodes"][i]["replayed_lsn"].as_str().map(str::to_string);
        r(2).is_some() && r(1) != r(2)
    });
    let o = c.pgrepl(&["failover", "--yes"]);
    assert_eq!(o.status.code(), Some(11), "failover must refuse while the primary runs");
    let out = c.ok(&["failover", "--stop-primary", "--yes"]);
    assert!(out.contains("promoting pg-3"), "{out}");
    assert!(out.contains("pg-1 stays stopped; `pgrepl rejoin pg-1`"), "{out}");
    assert_eq!(primary(&c), "pg-3");
    c.sql("pg-2", "SELECT pg_wal_replay_resume()").unwrap();
    wait_until("pg-2 follows pg-3", T, || c.streaming("pg-2"));
    assert_eq!(c.sql("pg-2", "SELECT x FROM after_pause").unwrap(), "1");
    assert_eq!(c.node_status("pg-1")["state"], "stopped");
    // Its files still say primary: `up pg-1` must not start it before a rejoin.
    let out = c.ok(&["up", "pg-1"]);
    assert!(out.contains("a supervisor is already running"), "{out}");
    wait_until("the supervisor says why pg-1 stays stopped", T, || {
        std::fs::read_to_string(c.path("data/pgrepl.log"))
            .unwrap_or_default()
            .contains("pg-1: was the primary before a failover and stays stopped")
    });
    assert_eq!(c.node_status("pg-1")["state"], "stopped");
    let writable = c.status()["nodes"].as_array().unwrap().iter().filter(|n| n["role"] == "primary").count();
    assert_eq!(writable, 1, "two primaries");
    c.ok(&["rejoin", "pg-1"]);
    wait_until("pg-1 streams from pg-3", T, || c.streaming("pg-1"));
}

#[test]
fn diverged_former_primary_is_rewound_by_rejoin() {
    // Manual mode: nothing rejoins the fenced primary behind the test's back.
    let c = Cluster::with_extra(2, MANUAL);
    c.up();
    c.sql("pg-1", "CREATE TABLE facts (id int PRIMARY KEY)").unwrap();
    c.sql("pg-1", "INSERT INTO facts VALUES (1)").unwrap();
    wait_until("row on pg-2", T, || c.sql("pg-2", "SELECT count(*) FROM facts").as_deref() == Ok("1"));
    c.ok(&["failover", "--stop-primary", "--yes", "--to", "pg-2"]);
    c.sql("pg-2", "INSERT INTO facts VALUES (2)").unwrap();

    // The old primary, out of the supervisor's control, takes writes of its own.
    let bin = pgrepl::find_postgres(None).unwrap();
    let mut cmd = Command::new(bin.program("postgres"));
    cmd.arg("-D").arg(c.data_dir("pg-1")).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    if crate::harness::is_root() {
        use std::os::unix::process::CommandExt;
        let u = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    let mut rogue = cmd.spawn().unwrap();
    wait_until("isolated pg-1 accepts writes", T, || c.sql("pg-1", "INSERT INTO facts VALUES (99)").is_ok());
    c.sql("pg-1", "CREATE TABLE divergent AS SELECT 1 AS x").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(rogue.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    rogue.wait().unwrap();

    let out = c.ok(&["rejoin", "pg-1"]);
    assert!(out.contains("pg-1 rewound"), "{out}");
    wait_until("pg-1 streaming from pg-2", T, || c.streaming("pg-1"));
    assert_eq!(
        c.sql("pg-1", "SELECT string_agg(id::text, ',' ORDER BY id) FROM facts").unwrap(),
        "1,2",
        "divergent row survived"
    );
    assert_eq!(c.sql("pg-1", "SELECT count(*) FROM pg_tables WHERE tablename = 'divergent'").unwrap(), "0");
}

#[test]
fn rejoin_of_a_dir_rewind_cannot_fix_is_refused_untouched() {
    let c = cluster(1);
    c.up();
    let other = Cluster::new(0);
    other.up();
    other.ok(&["down"]);
    c.ok(&["down", "pg-2"]);
    let pg2 = c.data_dir("pg-2");
    std::fs::remove_dir_all(&pg2).unwrap();
    std::fs::rename(other.data_dir("pg-1"), &pg2).unwrap();
    let before = snapshot(&pg2);
    let o = c.pgrepl(&["rejoin", "pg-2"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(11), "{err}");
    assert!(
        err.contains("rejoin refused, nothing changed: pg-2's data dir belongs to another cluster")
            && err.contains("Next step: `pgrepl reclone pg-2`"),
        "{err}"
    );
    assert_eq!(snapshot(&pg2), before);
    // The named next step works.
    c.ok(&["reclone", "pg-2"]);
    wait_until("pg-2 streaming", T, || c.streaming("pg-2"));
}

#[test]
fn primary_killed_and_unable_to_restart_fails_over_then_rejoins_by_rewind() {
    let c = Cluster::with_extra(
        2,
        "\n[monitor]\ninterval = \"200ms\"\n\n[failover]\nprimary_start_timeout = \"2s\"\nrejoin_interval = \"1s\"\n",
    );
    c.up();
    c.sql("pg-1", "CREATE TABLE t AS SELECT 1 AS x").unwrap();
    // Make the in-place restart fail, then kill the primary.
    let base = c.data_dir("pg-1").join("postgresql.base.conf");
    let original = std::fs::read_to_string(&base).unwrap();
    std::fs::write(&base, format!("{original}\nthis_setting_does_not_exist = 1\n")).unwrap();
    let pid = c.postmaster_pid("pg-1").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();

    wait_until("a replica promoted", T, || primary(&c) != "pg-1");
    let new = primary(&c);
    let third = if new == "pg-2" { "pg-3" } else { "pg-2" };
    wait_until(&format!("{third} follows {new}"), T, || c.streaming(third));
    assert_eq!(timeline(&c, &new), 2);
    assert_eq!(timeline(&c, third), 2, "the third node follows the new timeline");
    c.sql(&new, "INSERT INTO t VALUES (2)").unwrap();
    let st = c.status();
    assert_eq!(st["last_move"], format!("failover from pg-1 to {new}"));
    assert_eq!(c.node_status("pg-1")["state"], "stopped", "the old primary must not run while it cannot rejoin");
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    assert!(log.contains("ha: primary pg-1 is not accepting writes for"), "{log}");
    assert!(log.contains("and its lease expired; promoting"), "{log}");

    // Once it can start again, it comes back as a standby through pg_rewind.
    std::fs::write(&base, original).unwrap();
    wait_until("pg-1 streams from the new primary", T, || c.streaming("pg-1"));
    assert_eq!(c.node_status("pg-1")["role"], "replica");
    wait_until("pg-1 has the new primary's write", T, || c.sql("pg-1", "SELECT count(*) FROM t").as_deref() == Ok("2"));
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    assert!(log.contains("pg-1 rewound"), "{log}");
}

#[test]
fn paused_ha_leaves_a_dead_primary_alone_until_resume() {
    let c = Cluster::with_extra(
        1,
        "\n[monitor]\ninterval = \"200ms\"\n\n[failover]\nprimary_start_timeout = \"1s\"\nauto_rejoin = false\n",
    );
    c.up();
    let out = c.ok(&["pause", "--reason", "upgrading pg-1"]);
    assert!(out.contains("automatic failover paused (since ") && out.contains("upgrading pg-1"), "{out}");
    assert!(c.status()["paused"].as_str().unwrap().ends_with(": upgrading pg-1"));
    let check = c.pgrepl(&["check"]);
    assert_eq!(check.status.code(), Some(1), "paused is a warning: {}", text(&check.stdout));
    assert!(text(&check.stdout).contains("automatic failover is paused since"), "{}", text(&check.stdout));
    // The next monitor snapshot serves it to Prometheus.
    wait_until("pgrepl_ha_paused 1 in /metrics", T, || {
        crate::harness::http_get(c.ports[0] + 10000, "/metrics")
            .is_some_and(|(_, b)| b.contains("\npgrepl_ha_paused 1\n"))
    });

    // The primary dies and cannot restart: paused, nobody is promoted, and
    // the HA sentence keeps counting well past primary_start_timeout.
    let base = c.data_dir("pg-1").join("postgresql.base.conf");
    let original = std::fs::read_to_string(&base).unwrap();
    std::fs::write(&base, format!("{original}\nthis_setting_does_not_exist = 1\n")).unwrap();
    let pid = c.postmaster_pid("pg-1").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let down_secs = |c: &Cluster| -> f64 {
        let ha = c.status()["ha"].as_str().unwrap_or("").to_string();
        ha.split_once("not accepting writes (")
            .and_then(|(_, r)| r.split_once("s)"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0.0)
    };
    wait_until("the primary down for 3 s while paused", T, || down_secs(&c) >= 3.0);
    assert_eq!(primary(&c), "pg-1", "a paused cluster failed over by itself");
    assert_eq!(c.node_status("pg-2")["role"], "replica");
    let ha = c.status()["ha"].as_str().unwrap().to_string();
    assert!(ha.contains("(`pgrepl resume` ends it)") && ha.contains("run `pgrepl failover`"), "{ha}");

    // Resumed, the same facts lead to a failover.
    assert!(c.ok(&["resume"]).contains("automatic failover resumed"));
    wait_until("pg-2 promoted after resume", T, || primary(&c) == "pg-2");
    c.sql("pg-2", "SELECT 1").unwrap();
    assert!(c.status()["paused"].is_null());
}

#[test]
fn the_event_hook_runs_after_each_move_as_the_os_user_and_cannot_fail_it() {
    let c = Cluster::with_extra(1, &format!("{MANUAL}\n[hooks]\non_event = \"hook.sh\"\n"));
    // The hook runs as the OS user PostgreSQL runs as: give it a place to write.
    let logs = c.path("hooklog");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    c.write(
        "hook.sh",
        &format!(
            "#!/bin/sh\necho \"$1 $2 primary=$PGREPL_PRIMARY cluster=$PGREPL_CLUSTER user=$(id -un) pw=${{PGPASSWORD:-none}}\" >> {}/events\necho said-by-hook\nexit 3\n",
            logs.display()
        ),
    );
    std::fs::set_permissions(c.path("hook.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    c.up();
    // Straight after `up`: switchover gives the new standby a moment to
    // report its replay position instead of refusing at once.
    let out = c.ok(&["switchover", "--yes"]);
    assert!(out.contains("switchover complete: pg-2 is primary"), "{out}");
    assert!(out.contains("hook: said-by-hook") && out.contains("failed (exit status: 3)"), "{out}");
    c.ok(&["pause"]);
    let events = std::fs::read_to_string(logs.join("events")).unwrap();
    let user =
        if crate::harness::is_root() { "postgres".to_string() } else { std::env::var("USER").unwrap_or_default() };
    assert_eq!(
        events,
        format!(
            "switchover pg-2 primary=pg-2 cluster=it user={user} pw=none\npause - primary=pg-2 cluster=it user={user} pw=none\n"
        )
    );
}

#[test]
fn a_replica_with_failover_priority_zero_is_never_promoted() {
    let c = Cluster::with_extra(2, MANUAL);
    // pg-2 is a reporting replica: it streams, but never becomes primary.
    let body = std::fs::read_to_string(c.config()).unwrap().replacen(
        &format!("name = \"pg-2\"\nport = {}\n", c.ports[1]),
        &format!("name = \"pg-2\"\nport = {}\nfailover_priority = 0\n", c.ports[1]),
        1,
    );
    c.write("pgrepl.toml", &body);
    c.up();
    let o = c.pgrepl(&["switchover", "--to", "pg-2", "--yes"]);
    assert_eq!(o.status.code(), Some(11));
    assert!(text(&o.stderr).contains("pg-2 has failover_priority = 0 and is never promoted"), "{}", text(&o.stderr));
    assert_eq!(primary(&c), "pg-1");
    let out = c.ok(&["failover", "--stop-primary", "--yes"]);
    assert!(out.contains("promoting pg-3"), "{out}");
    wait_until("pg-2 follows pg-3", T, || c.streaming("pg-2"));
    assert_eq!(c.node_status("pg-2")["role"], "replica");
}
