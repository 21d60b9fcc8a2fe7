//! `pgrepl drill` across hosts: run on a replica's host, it writes as the
//! application over TCP, and its faults are made by the primary's own
//! agent; the test's own writer, probe and watcher check its figures and
//! the invariants.

use super::{text, Site, StaleAcks, Watched};

/// `pgrepl drill ARGS --json --yes` on host `i`: its report, and whether it passed.
fn drill(site: &Site, i: usize, args: &[&str]) -> (serde_json::Value, bool) {
    let mut all = vec!["drill", "--json", "--yes"];
    all.extend_from_slice(args);
    let o = site.on(i, &all);
    let report = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("host {i}: drill {args:?}: no report ({e}):\n{}\n{}\n{}", text(&o.stdout), text(&o.stderr), site.logs())
    });
    if !o.status.success() {
        eprintln!("host {i}: drill {args:?} failed; its stderr:\n{}", text(&o.stderr));
    }
    (report, o.status.success())
}

#[test]
fn drills_across_hosts_switch_over_kill_postgres_kill_an_agent_and_isolate_the_primary_and_lose_nothing() {
    // In sync-strict, where losing nothing is the design: in async a write
    // acknowledged in the instant before the primary is cut off may not
    // have reached a standby yet, and the drill rightly reports it lost
    // (seen once, in the isolate-primary round).
    let Some(site) = Site::with_durability(1, "sync-strict", "") else { return };
    site.up();
    // The drill checks the cluster first, as host 3 sees it (the other
    // hosts' nodes through what their agents publish).
    site.wait("host 3 sees both replicas streaming from pg-1", || {
        let st = site.status(3);
        ["pg-2", "pg-3"].iter().all(|n| {
            Site::node(&st, n).is_some_and(|x| x["upstream"] == "pg-1" && x["replication"]["state"] == "streaming")
        })
    });
    let mut w = Watched::start(&site);
    w.fault();
    let (r, passed) = drill(&site, 3, &["--fault", "switchover", "--rounds", "2", "--durability-check"]);
    assert!(passed, "{r:#}\n{}", site.logs());
    assert_eq!(r["mode"], "across hosts");
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{r:#}");
    assert!(rounds.iter().all(|x| x["primary_after"] != x["primary_before"]), "{r:#}");
    assert_eq!(r["summary"]["lost_acknowledged"], 0);
    assert_eq!(r["summary"]["dual_primary_samples"], 0);
    let checks = r["durability_check"].as_array().unwrap();
    assert!(checks.len() == 3 && checks.iter().all(|n| n["missing"] == 0), "{r:#}");
    w.writer.wait_more(20);

    // The primary's postgres killed by its own agent, asked from pg-2's host.
    let (r, passed) = drill(&site, 2, &["--fault", "kill-postgres", "--rounds", "1"]);
    assert!(passed, "{r:#}\n{}", site.logs());
    let x = &r["rounds"][0];
    assert!(x["rto_seconds"].as_f64().is_some(), "{r:#}");
    assert_eq!(x["dual_primary_samples"], 0);
    w.writer.wait_more(20);

    // The primary's agent killed (it leaves a restarter, as systemd would
    // restart it): its fence freezes postgres, a replica takes over, and
    // the agent, back, brings the old primary back as a standby.
    let (r, passed) = drill(&site, 3, &["--fault", "kill-agent", "--rounds", "1"]);
    assert!(passed, "{r:#}\n{}", site.logs());
    let x = &r["rounds"][0];
    assert_ne!(x["primary_after"], x["primary_before"], "{r:#}");
    assert_eq!(x["dual_primary_samples"], 0);
    w.writer.wait_more(20);

    // The primary's host cut off from its peers and etcd for 5 s by its own
    // agent (which leaves the undo to a process of its own first).
    // Run from a host other than the primary's (the drill refuses to cut itself off).
    let from = if site.primary_seen_by(1).as_deref() == Some("pg-3") { 2 } else { 3 };
    let (r, passed) = drill(&site, from, &["--fault", "isolate-primary", "--freeze-for", "5s", "--rounds", "1"]);
    assert!(passed, "{r:#}\n{}", site.logs());
    let x = &r["rounds"][0];
    assert_ne!(x["primary_after"], x["primary_before"], "{r:#}");
    assert_eq!(x["dual_primary_samples"], 0);
    w.writer.wait_more(20);
    // Its table is gone from the app database.
    let gone = site.sql(1, "SELECT to_regclass('pgrepl_drill') IS NULL");
    assert_eq!(gone, "t");
    w.finish_with(&site, "drills across hosts", StaleAcks::Never, false);
}

/// `freeze-host`: the primary's agent has a helper freeze it, its fence and
/// its PostgreSQL for 6 s, as a stalled VM. In async, a commit the old
/// primary finished just as everything woke may be acknowledged late: such
/// acknowledgements are counted, as in the other whole-host freezes.
#[test]
fn a_freeze_host_drill_across_hosts_replaces_the_stalled_primary_and_brings_it_back() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    site.wait("host 3 sees both replicas streaming from pg-1", || {
        let st = site.status(3);
        ["pg-2", "pg-3"].iter().all(|n| Site::node(&st, n).is_some_and(|x| x["replication"]["state"] == "streaming"))
    });
    let mut w = Watched::start(&site);
    w.fault();
    let (r, passed) = drill(&site, 3, &["--fault", "freeze-host", "--freeze-for", "6s", "--rounds", "1"]);
    assert!(passed, "{r:#}\n{}", site.logs());
    let x = &r["rounds"][0];
    assert_ne!(x["primary_after"], x["primary_before"], "{r:#}");
    assert_eq!(x["dual_primary_samples"], 0);
    w.writer.wait_more(20);
    w.finish_with(&site, "drill freeze-host", StaleAcks::Counted, false);
}
