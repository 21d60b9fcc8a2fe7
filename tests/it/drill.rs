//! `pgrepl drill` on a real cluster, checked against an independent writer
//! run by the test: the drill's figures must match what another client saw.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{text, wait_until, Cluster};
use crate::moves::{Writer, APP_DB};

const T: Duration = Duration::from_secs(90);

fn cluster(replicas: usize) -> Cluster {
    let c = Cluster::with_extra(replicas, APP_DB);
    c.write("secrets/app.password", "app-secret\n");
    c.up();
    c.sql_db("pg-1", "app", "CREATE TABLE w (id bigint PRIMARY KEY); ALTER TABLE w OWNER TO app").unwrap();
    c
}

/// Run the drill with `args` and `--json --yes`: its report, and whether it passed.
fn drill(c: &Cluster, args: &[&str]) -> (serde_json::Value, bool) {
    let mut all = vec!["drill", "--json", "--yes"];
    all.extend_from_slice(args);
    let o = c.pgrepl(&all);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("drill {args:?}: no JSON report ({e}):\n{}\n{}", text(&o.stdout), text(&o.stderr)));
    (report, o.status.success())
}

/// The test writer's acknowledged ids missing from the primary.
fn lost(c: &Cluster, acked: &[i64]) -> usize {
    let primary = c.status()["primary"].as_str().unwrap().to_string();
    let have: HashSet<i64> =
        c.sql_db(&primary, "app", "SELECT id FROM w").unwrap().lines().map(|l| l.parse().unwrap()).collect();
    acked.iter().filter(|id| !have.contains(id)).count()
}

/// Headless Chromium with `args`: its stdout.
fn chromium(c: &Cluster, args: &[&str]) -> String {
    let profile = format!("--user-data-dir={}", c.path("chromium").display());
    let o = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", &profile])
        .args(args)
        .output()
        .expect("chromium (scripts/install-deps.sh --test installs it)");
    assert!(o.status.success(), "chromium {args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

fn secs(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_switchover_drill_reports_the_gap_and_losses_an_independent_writer_saw() {
    let c = cluster(2);
    let w = Writer::start(&c);
    // To place the drill's wall-clock fault times on the writer's clock.
    let anchor = (Instant::now(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
    w.wait_more(20);
    let html = c.path("drill.html").display().to_string();
    let args = ["--fault", "switchover", "--rounds", "2", "--rate", "100/s", "--durability-check", "--report", &html];
    let (r, passed) = drill(&c, &args);
    w.wait_more(20);
    let theirs = w.longest_gap().as_secs_f64();
    assert!(passed, "{r:#}");
    assert_eq!(r["ok"], true);
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{r:#}");
    // The drill's own writer and the test's saw the same outage.
    let ours = rounds.iter().map(|x| secs(&x["write_gap_seconds"])).fold(0.0, f64::max);
    assert!((ours - theirs).abs() <= 0.5, "drill write gap {ours}s, test writer {theirs}s");
    // RTO: from the fault to the first write the new primary acknowledged,
    // as the test's writer saw it.
    for x in rounds {
        let fault = anchor.0 + Duration::from_secs_f64(secs(&x["fault_at_unix"]) - anchor.1);
        let (back, _) = w.first_ack_elsewhere_after(fault).expect("the test writer wrote to the new primary");
        let theirs = (back - fault).as_secs_f64();
        let rto = secs(&x["rto_seconds"]);
        assert!((rto - theirs).abs() <= 0.5, "round {}: drill RTO {rto}s, test writer {theirs}s", x["round"]);
    }
    let acked = w.finish();
    assert_eq!(r["summary"]["lost_acknowledged"].as_u64(), Some(lost(&c, &acked) as u64));
    assert_eq!(r["summary"]["lost_acknowledged"], 0, "a switchover loses nothing");
    assert_eq!(r["summary"]["dual_primary_samples"], 0);
    assert!(r["summary"]["samples"].as_u64().unwrap() > 20, "the watcher sampled: {r:#}");
    for x in rounds {
        assert_eq!(x["timeline_after"].as_i64(), x["timeline_before"].as_i64().map(|t| t + 1), "{x}");
        assert_ne!(x["primary_after"], x["primary_before"], "{x}");
    }
    let checks = r["durability_check"].as_array().unwrap();
    assert!(checks.len() == 3 && checks.iter().all(|n| n["missing"] == 0), "{r:#}");
    // It cleans up after itself: its table is gone, and the cluster is healthy.
    let primary = c.status()["primary"].as_str().unwrap().to_string();
    assert_eq!(c.sql(&primary, "SELECT to_regclass('pgrepl_drill') IS NULL").unwrap(), "t");
    wait_until("check says OK", T, || c.pgrepl(&["check"]).status.code() == Some(0));
    // The HTML report, as a browser renders it: a timeline per round, each
    // with its fault marker, and a screenshot.
    let dom = chromium(&c, &["--dump-dom", &format!("file://{html}")]);
    let timelines: Vec<&str> = dom.split(r#"<svg class="round""#).skip(1).collect();
    assert_eq!(timelines.len(), 2, "{dom}");
    assert!(timelines.iter().all(|t| t.contains(r#"<line class="fault""#)), "{dom}");
    let png = c.path("drill.png");
    chromium(&c, &["--window-size=1100,1000", &format!("--screenshot={}", png.display()), &format!("file://{html}")]);
    let shot = std::fs::read(&png).expect("a screenshot");
    assert!(shot.starts_with(b"\x89PNG") && shot.len() > 10_000, "{} bytes", shot.len());
    let history = c.ok(&["history", "--json"]);
    assert_eq!(history.matches("\"switchover\"").count(), 2, "{history}");
}

#[test]
fn a_kill_postgres_drill_counts_the_same_losses_as_an_independent_writer_and_the_table_shows_them() {
    let c = cluster(1);
    let w = Writer::start(&c);
    w.wait_more(20);
    let o = c.pgrepl(&["drill", "--fault", "kill-postgres", "--rounds", "1", "--yes"]);
    let table = text(&o.stdout);
    w.wait_more(20);
    let acked = w.finish();
    assert!(o.status.success(), "{table}\n{}", text(&o.stderr));
    assert!(table.contains("round  RTO"), "{table}");
    assert!(table.contains("result: PASS"), "{table}");
    // The primary's postgres died: the supervisor restarted it in place or
    // a replica took over; either way writes came back and nothing
    // acknowledged by the test's writer was lost that the drill did not report.
    let line = table.lines().find(|l| l.starts_with("acknowledged writes:")).unwrap_or_default();
    assert!(line.contains(&format!("lost: {}", lost(&c, &acked))), "{table}");
    wait_until("the cluster is healthy again", T, || c.pgrepl(&["check"]).status.code() == Some(0));
}

#[test]
fn a_drill_refuses_bad_options_and_an_unhealthy_or_paused_cluster_and_changes_nothing() {
    let c = Cluster::new(1);
    c.up();
    wait_until("pg-2 streams", T, || c.streaming("pg-2"));
    let refused = |args: &[&str], code: i32, says: &str| {
        let o = c.pgrepl(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(says), "{args:?}: {}", text(&o.stderr));
    };
    refused(&["drill", "--fault", "freeze-host", "--yes"], 64, "needs a cluster across hosts");
    refused(&["drill", "--rate", "0/s", "--yes"], 64, "--rate 0/s is out of range");
    refused(&["drill", "--rounds", "50", "--yes"], 64, "--rounds 50 is out of range");
    refused(&["drill", "--fault", "unplug"], 2, "no fault `unplug`");
    refused(&["drill"], 64, "add --yes");
    c.ok(&["pause", "--reason", "maintenance"]);
    refused(&["drill", "--yes"], 11, "the cluster is paused");
    c.ok(&["resume"]);
    c.ok(&["down", "pg-2"]);
    refused(&["drill", "--yes"], 11, "pg-2 not streaming from pg-1");
    assert_eq!(c.sql("pg-1", "SELECT to_regclass('pgrepl_drill') IS NULL").unwrap(), "t");
    assert_eq!(c.ok(&["history", "--json"]).trim(), "[]");
}

#[test]
fn a_freeze_postgres_drill_stops_writes_for_the_freeze_and_thaws_the_primary_whatever_happens() {
    let c = cluster(1);
    let (r, passed) = drill(&c, &["--fault", "freeze-postgres", "--freeze-for", "3s", "--rounds", "1"]);
    assert!(passed, "{r:#}");
    let x = &r["rounds"][0];
    // Shorter than primary_start_timeout (10 s): the same primary, back
    // when it thaws, and no write acknowledged while it was stopped.
    assert_eq!(x["primary_after"], x["primary_before"], "{r:#}");
    let rto = secs(&x["rto_seconds"]);
    assert!((3.0..10.0).contains(&rto), "RTO {rto}s for a 3 s freeze: {r:#}");
    assert_eq!(r["fault_seconds"], 3.0);
    // Nothing of the primary is left stopped.
    let pid = c.postmaster_pid("pg-1").expect("pg-1 runs");
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(!state.rsplit_once(") ").unwrap().1.starts_with('T'), "pg-1's postmaster is still stopped: {state}");
}
