//! Observing a live cluster with real clients: promtool, HAProxy, the
//! Nagios-style check, the health API under replay lag, and the JSON schema.

use std::process::Command;
use std::time::Duration;

use crate::harness::{http_get, text, wait_until, Cluster};

const T: Duration = Duration::from_secs(60);
const FAST_MONITOR: &str = "\n[monitor]\ninterval = \"200ms\"\nwarn_lag = \"1s\"\ncrit_lag = \"3s\"\n";

fn api(c: &Cluster, i: usize) -> u16 {
    c.ports[i] + 10000
}

fn promtool(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.success(), format!("{}{}", crate::harness::text(&o.stdout), crate::harness::text(&o.stderr)))
}

#[test]
fn metrics_pass_promtool_live_and_as_rendered_for_the_fixture() {
    let (ok, why) = promtool(include_str!("../fixtures/metrics.txt"));
    assert!(ok, "fixture: {why}");
    let c = Cluster::with_extra(1, FAST_MONITOR);
    c.up();
    wait_until("metrics served", T, || http_get(api(&c, 0), "/metrics").is_some_and(|(code, _)| code == 200));
    let (_, body) = http_get(api(&c, 0), "/metrics").unwrap();
    let (ok, why) = promtool(&body);
    assert!(ok, "live metrics: {why}\n{body}");
    assert!(body.contains("pgrepl_node_role{node=\"pg-1\",role=\"primary\"} 1"), "{body}");
    assert!(body.contains("pgrepl_replication_streaming{node=\"pg-2\"} 1"), "{body}");
    assert!(body.contains("pgrepl_slot_retained_bytes{slot=\"pg_2\"}"), "{body}");
}

#[test]
fn haproxy_sends_writes_to_the_primary_and_reads_to_a_replica() {
    let c = Cluster::with_extra(
        2,
        &format!("{FAST_MONITOR}\n[[database]]\nname = \"app\"\nowner = \"app\"\nowner_password_file = \"secrets/app.password\"\n"),
    );
    c.write("secrets/app.password", "app-secret\n");
    c.up();
    // The example HAProxy config, pointed at this cluster's ports.
    let (rw, ro) = (crate::harness::free_port(), crate::harness::free_port());
    let mut cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/haproxy.cfg")).unwrap();
    for i in 0..3 {
        cfg = cfg
            .replace(&format!("1543{}", 2 + i), &c.ports[i].to_string())
            .replace(&format!("2543{}", 2 + i), &api(&c, i).to_string());
    }
    cfg = cfg
        .replace("127.0.0.1:15000", &format!("127.0.0.1:{rw}"))
        .replace("127.0.0.1:15001", &format!("127.0.0.1:{ro}"));
    let _haproxy = c.haproxy(&cfg);
    let psql = pgrepl::find_postgres(None).unwrap().program("psql");
    let in_recovery = |port: u16| {
        let o = Command::new(&psql)
            .args(["-X", "-tAc", "SELECT pg_is_in_recovery()"])
            .arg(format!("host=127.0.0.1 port={port} user=app dbname=app connect_timeout=3"))
            .env("PGPASSWORD", "app-secret")
            .output()
            .unwrap();
        text(&o.stdout).trim().to_string()
    };
    wait_until("read-write frontend reaches the primary", T, || in_recovery(rw) == "f");
    wait_until("read-only frontend reaches a replica", T, || in_recovery(ro) == "t");
}

fn check(c: &Cluster) -> (i32, String) {
    let o = c.pgrepl(&["check"]);
    (o.status.code().unwrap_or(-1), text(&o.stdout))
}

#[test]
fn check_and_replica_lag_endpoint_follow_paused_replay() {
    let c = Cluster::with_extra(1, FAST_MONITOR);
    c.up();
    c.sql("pg-1", "CREATE TABLE ticks (t timestamptz DEFAULT now())").unwrap();
    // The idle trap: once nothing is written for longer than warn_lag, a
    // caught-up replica is still healthy and lag-free.
    wait_until("a replayed transaction older than warn_lag", T, || {
        c.node_status("pg-2")["last_replay_timestamp"].as_str().is_some_and(|ts| {
            let q = format!("SELECT now() - '{ts}'::timestamptz > interval '2 seconds'");
            c.sql("pg-1", &q).as_deref() == Ok("t")
        })
    });
    let (code, out) = check(&c);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("PGREPL OK - primary pg-1"), "{out}");
    assert_eq!(http_get(api(&c, 1), "/replica?lag=1s").map(|r| r.0), Some(200));

    // Pause replay and keep writing: the lag grows past the thresholds.
    c.sql("pg-2", "SELECT pg_wal_replay_pause()").unwrap();
    wait_until("check reports the lag and /replica?lag=1s says 503", T, || {
        c.sql("pg-1", "INSERT INTO ticks DEFAULT VALUES").unwrap();
        let (code, _) = check(&c);
        (code == 1 || code == 2) && http_get(api(&c, 1), "/replica?lag=1s").map(|r| r.0) == Some(503)
    });
    let (_, out) = check(&c);
    assert!(out.contains("pg-2: replay lag"), "{out}");
    assert_eq!(http_get(api(&c, 1), "/replica").map(|r| r.0), Some(200), "still a streaming replica without a bound");

    c.sql("pg-2", "SELECT pg_wal_replay_resume()").unwrap();
    wait_until("lag back under the bound", T, || {
        http_get(api(&c, 1), "/replica?lag=1s").map(|r| r.0) == Some(200) && check(&c).0 == 0
    });
}

#[test]
fn check_is_critical_when_a_replica_is_stopped() {
    let c = Cluster::with_extra(2, FAST_MONITOR);
    c.up();
    c.ok(&["down", "pg-3"]);
    let (code, out) = check(&c);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("PGREPL CRITICAL - pg-3: stopped"), "{out}");
    // The supervisor keeps serving pg-3's port and says it is down.
    wait_until("pg-3's /health says 503", T, || http_get(api(&c, 2), "/health").is_some_and(|(code, _)| code == 503));
    assert_eq!(http_get(api(&c, 1), "/health").map(|r| r.0), Some(200));
}

/// Every key of an object, recursively, as dotted paths ("[]" for arrays).
fn keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.push(p.clone());
                keys(v, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                keys(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Paths whose value is null somewhere in the document.
fn nulls(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Null => out.push(prefix.to_string()),
        serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| nulls(v, &format!("{prefix}.{k}"), out)),
        serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| nulls(v, &format!("{prefix}[{i}]"), out)),
        _ => {}
    }
}

fn documented(section: &str) -> Vec<String> {
    // docs/status.md lists every key path between "<!-- keys:SECTION -->" markers.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.md")).unwrap();
    let start = doc.find(&format!("<!-- keys:{section} -->")).expect("section");
    let body = &doc[start..];
    let end = body.find("<!-- /keys -->").unwrap();
    body[..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- `"))
        .map(|l| l.split('`').next().unwrap().to_string())
        .collect()
}

#[test]
fn status_and_monitor_json_match_the_documented_schema_with_every_field_filled() {
    // Lines before the first table header land in the harness's [postgresql].
    let c = Cluster::with_extra(
        1,
        &format!("max_slot_wal_keep_size = \"1GB\"\n{FAST_MONITOR}\n[archive]\ndir = \"archive\"\n"),
    );
    c.up();
    c.sql("pg-1", "CREATE TABLE t AS SELECT 1 AS x").unwrap();
    wait_until("a transaction replayed on pg-2", T, || !c.node_status("pg-2")["last_replay_timestamp"].is_null());
    c.sql("pg-1", "SELECT pg_switch_wal()").unwrap();
    wait_until("a segment archived", T, || !c.status()["archive"]["last_archived_wal"].is_null());
    let status: serde_json::Value = serde_json::from_str(&c.ok(&["status", "--json"])).unwrap();
    let mut got = Vec::new();
    keys(&status, "", &mut got);
    got.sort();
    got.dedup();
    let mut want = documented("status");
    want.sort();
    assert_eq!(got, want, "status --json keys differ from docs/status.md");
    // Every field filled, except those that are null by definition on a
    // healthy cluster (documented as such).
    let mut n = Vec::new();
    nulls(&status, "", &mut n);
    let allowed = |p: &str| {
        p.ends_with(".error")
            || p == ".last_move"
            || p == ".paused"
            || p == ".state_error"
            || p == ".settling"
            || p == ".archive.last_failed_wal"
            || p == ".archive.last_failed_time"
            || (p.starts_with(".nodes[0].")
                && [
                    ".received_lsn",
                    ".replayed_lsn",
                    ".last_replay_timestamp",
                    ".wal_receiver",
                    ".replication",
                    ".upstream",
                    ".standby_slots",
                ]
                .iter()
                .any(|s| p.ends_with(s)))
            || (p.starts_with(".nodes[1].") && p.ends_with(".current_lsn"))
    };
    let unexpected: Vec<&String> = n.iter().filter(|p| !allowed(p)).collect();
    assert!(unexpected.is_empty(), "unexpected nulls in status --json: {unexpected:?}\n{status:#}");

    let line = c.ok(&["monitor", "--json", "--count", "1", "--interval", "100ms"]);
    let report: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let mut got = Vec::new();
    keys(&report, "", &mut got);
    got.sort();
    got.dedup();
    let mut want = documented("monitor");
    want.sort();
    assert_eq!(got, want, "monitor --json keys differ from docs/status.md");
    let mut n = Vec::new();
    nulls(&report, "", &mut n);
    let unexpected: Vec<&String> = n.iter().filter(|p| !p.ends_with(".error")).collect();
    assert!(unexpected.is_empty(), "unexpected nulls in monitor --json: {unexpected:?}\n{report:#}");
}

#[test]
fn status_watch_redraws_and_an_unreachable_node_does_not_hide_the_others() {
    let c = Cluster::new(1);
    c.up();
    c.ok(&["down", "pg-2"]);
    let st = c.status();
    assert_eq!(st["nodes"][1]["state"], "stopped");
    assert_eq!(st["nodes"][0]["state"], "running");
    assert_eq!(st["nodes"][0]["role"], "primary");
    let out_path = c.path("watch.out");
    let mut w = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-c")
        .arg(c.config())
        .args(["status", "--watch", "--interval", "200ms"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    wait_until("three refreshes", T, || {
        std::fs::read_to_string(&out_path).unwrap_or_default().matches("cluster it (primary: pg-1)").count() >= 3
    });
    let _ = w.kill();
    let _ = w.wait();
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(out.contains("! pg-2: stopped"), "{out}");
}

/// Metric names pgrepl exports: the `# TYPE` lines of the fixture, which
/// renders every family (a unit test holds it to that).
fn exported_metrics() -> std::collections::BTreeSet<String> {
    include_str!("../fixtures/metrics.txt")
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Every `pgrepl_*` name in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("pgrepl_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests_and_name_exported_metrics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus");
    for args in [&["check", "rules", "alerts.yml"][..], &["test", "rules", "alerts_test.yml"][..]] {
        let o = Command::new("promtool").args(args).current_dir(&dir).output().expect("promtool");
        assert!(o.status.success(), "promtool {args:?}: {}{}", text(&o.stdout), text(&o.stderr));
    }
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let exported = exported_metrics();
    let code: String = rules.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    for name in metric_names(&code) {
        assert!(exported.contains(&name), "alerts.yml names {name}, which pgrepl does not export");
    }
    // Each rule's runbook points at a section of docs/operations.md.
    let ops = std::fs::read_to_string(dir.join("../../docs/operations.md")).unwrap();
    let anchors: Vec<String> = ops
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let runbooks: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("runbook: ")).collect();
    assert_eq!(runbooks.len(), rules.matches("- alert: ").count(), "every rule has a runbook line");
    for r in runbooks {
        let anchor = r.trim_matches('"').strip_prefix("docs/operations.md#").expect("a runbook in docs/operations.md");
        assert!(anchors.iter().any(|a| a == anchor), "no section #{anchor} in docs/operations.md ({anchors:?})");
    }
}

#[test]
fn the_grafana_dashboard_names_only_exported_metrics_and_uses_every_variable() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grafana/pgrepl.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    let exported = exported_metrics();
    let mut exprs: Vec<String> = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no targets", p["title"]));
        assert!(!targets.is_empty(), "panel {} queries nothing", p["title"]);
        exprs.extend(targets.iter().map(|t| t["expr"].as_str().expect("a PromQL expr").to_string()));
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        exprs.push(a["expr"].as_str().unwrap().to_string());
    }
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        for name in metric_names(e) {
            assert!(exported.contains(&name), "the dashboard queries {name}, which pgrepl does not export: {e}");
            used.insert(name);
        }
    }
    assert!(used.len() >= 20, "the panels cover the metrics: {used:?}");
    let everything = serde_json::to_string(&d["panels"]).unwrap() + &serde_json::to_string(&d["annotations"]).unwrap();
    for v in d["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        assert!(
            everything.contains(&format!("${name}")) || everything.contains(&format!("${{{name}}}")),
            "variable {name} is used by no panel"
        );
        // A variable's own query may use only the variables before it.
        if let Some(q) = v["definition"].as_str() {
            for n in metric_names(q) {
                assert!(exported.contains(&n), "variable {name} queries {n}");
            }
        }
    }
}
