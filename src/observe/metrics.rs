//! Prometheus text exposition of a snapshot. Pure: a [`Snapshot`] and the
//! current time in, text out. Names follow Prometheus conventions: the
//! `pgrepl_` prefix, base units in the name (`_bytes`, `_seconds`),
//! counters ending in `_total`, labels `node`, `role`, `slot`. An unknown
//! value is left out rather than reported as 0.

use std::fmt::Write;

use crate::observe::snapshot::Snapshot;

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let l = if l.is_empty() { String::new() } else { format!("{{{}}}", l.join(",")) };
        let _ = writeln!(self.out, "{name}{l} {}", num(value));
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Render the metrics for a snapshot taken at `snap.taken_unix`, as of `now_unix`.
pub(crate) fn render(snap: &Snapshot, now_unix: f64) -> String {
    let s = &snap.status;
    let mut out = String::new();
    let mut f = Family { out: &mut out };

    f.head("pgrepl_up", "gauge", "Whether the node's postgres answered the last snapshot (1) or not (0).");
    for n in &s.nodes {
        f.sample(
            "pgrepl_up",
            &[("node", &n.name)],
            f64::from(u8::from(n.state == crate::observe::status::NodeState::Running)),
        );
    }
    f.head(
        "pgrepl_primary",
        "gauge",
        "The node pgrepl records as the primary (the leader): 1 on that node's series, 0 on the others.",
    );
    for n in &s.nodes {
        f.sample("pgrepl_primary", &[("node", &n.name)], f64::from(u8::from(n.name == s.primary)));
    }
    f.head(
        "pgrepl_writable_primaries",
        "gauge",
        "Nodes observed running as a writable primary: 1 when healthy; 0 or 2 and more page someone.",
    );
    f.sample("pgrepl_writable_primaries", &[], s.nodes.iter().filter(|n| n.is_writable_primary()).count() as f64);
    f.head("pgrepl_node_role", "gauge", "The node's observed role: 1 on the series of the role it has.");
    for n in &s.nodes {
        f.sample("pgrepl_node_role", &[("node", &n.name), ("role", n.role.map_or("unknown", |r| r.as_str()))], 1.0);
    }
    f.head("pgrepl_timeline", "gauge", "The node's WAL timeline.");
    for n in &s.nodes {
        if let Some(t) = n.timeline {
            f.sample("pgrepl_timeline", &[("node", &n.name)], f64::from(t));
        }
    }
    f.head(
        "pgrepl_wal_position_bytes",
        "gauge",
        "WAL position as a byte offset: current (primary), received and replayed (standbys).",
    );
    for n in &s.nodes {
        for (pos, lsn) in [("current", n.current_lsn), ("received", n.received_lsn), ("replayed", n.replayed_lsn)] {
            if let Some(l) = lsn {
                f.sample("pgrepl_wal_position_bytes", &[("node", &n.name), ("position", pos)], l.0 as f64);
            }
        }
    }
    f.head("pgrepl_replication_streaming", "gauge", "Whether the primary lists the replica as streaming.");
    for n in s.nodes.iter().filter(|n| n.role != Some(crate::config::Role::Primary)) {
        let on = n.replication.as_ref().is_some_and(|r| r.state.as_deref() == Some("streaming"));
        f.sample("pgrepl_replication_streaming", &[("node", &n.name)], f64::from(u8::from(on)));
    }
    f.head(
        "pgrepl_replication_lag_bytes",
        "gauge",
        "Bytes of WAL the replica is behind the primary's current position, by kind.",
    );
    for n in &s.nodes {
        if let Some(r) = &n.replication {
            for (kind, v) in [
                ("send", r.send_lag_bytes),
                ("write", r.lag_bytes.write),
                ("flush", r.lag_bytes.flush),
                ("replay", r.lag_bytes.replay),
            ] {
                if let Some(v) = v {
                    f.sample("pgrepl_replication_lag_bytes", &[("node", &n.name), ("kind", kind)], v as f64);
                }
            }
        }
    }
    f.head(
        "pgrepl_replication_lag_seconds",
        "gauge",
        "Replication lag in seconds by kind (0 when the replica is caught up).",
    );
    for n in &s.nodes {
        if let Some(r) = &n.replication {
            for (kind, v) in
                [("write", r.lag_seconds.write), ("flush", r.lag_seconds.flush), ("replay", r.lag_seconds.replay)]
            {
                if let Some(v) = v {
                    f.sample("pgrepl_replication_lag_seconds", &[("node", &n.name), ("kind", kind)], v);
                }
            }
        }
    }
    f.head(
        "pgrepl_recovery_conflicts_total",
        "counter",
        "Queries cancelled on a standby by recovery conflicts, by kind.",
    );
    for n in &s.nodes {
        if let Some(c) = n.conflicts {
            for (kind, v) in [
                ("tablespace", c.tablespace),
                ("lock", c.lock),
                ("snapshot", c.snapshot),
                ("bufferpin", c.bufferpin),
                ("deadlock", c.deadlock),
            ] {
                f.sample("pgrepl_recovery_conflicts_total", &[("node", &n.name), ("kind", kind)], v as f64);
            }
        }
    }
    f.head("pgrepl_slot_active", "gauge", "Whether a standby is streaming through the slot.");
    for sl in &s.slots {
        f.sample("pgrepl_slot_active", &[("slot", &sl.slot)], f64::from(u8::from(sl.active)));
    }
    f.head(
        "pgrepl_slot_retained_bytes",
        "gauge",
        "WAL the slot holds back on the primary (current LSN minus restart_lsn).",
    );
    for sl in &s.slots {
        if let Some(b) = sl.retained_bytes {
            f.sample("pgrepl_slot_retained_bytes", &[("slot", &sl.slot)], b as f64);
        }
    }
    f.head("pgrepl_slot_wal_status", "gauge", "The slot's wal_status: 1 on the series of the status it has.");
    for sl in &s.slots {
        if let Some(w) = &sl.wal_status {
            f.sample("pgrepl_slot_wal_status", &[("slot", &sl.slot), ("wal_status", w)], 1.0);
        }
    }
    f.head("pgrepl_slot_safe_wal_size_bytes", "gauge", "WAL that can still be written before the slot is lost.");
    for sl in &s.slots {
        if let Some(b) = sl.safe_wal_size {
            f.sample("pgrepl_slot_safe_wal_size_bytes", &[("slot", &sl.slot)], b as f64);
        }
    }
    f.head(
        "pgrepl_pending_restart",
        "gauge",
        "Whether settings changed in the node's files wait for a restart (`pgrepl restart NODE`).",
    );
    for n in s.nodes.iter().filter_map(|n| n.pending_restart.as_ref().map(|p| (n, p))) {
        f.sample("pgrepl_pending_restart", &[("node", &n.0.name)], f64::from(u8::from(!n.1.is_empty())));
    }
    f.head("pgrepl_node_health", "gauge", "Health verdict per node: 0 healthy, 1 warning, 2 critical.");
    for h in &snap.health.nodes {
        f.sample("pgrepl_node_health", &[("node", &h.node)], f64::from(h.level.code()));
    }
    f.head("pgrepl_cluster_health", "gauge", "Health verdict of the cluster: 0 healthy, 1 warning, 2 critical.");
    f.sample("pgrepl_cluster_health", &[], f64::from(snap.health.level.code()));
    if let Some(a) = &s.archive {
        f.head("pgrepl_archive_size_bytes", "gauge", "Bytes in the WAL archive directory.");
        f.sample("pgrepl_archive_size_bytes", &[], a.size_bytes as f64);
        if let Some(n) = a.archived_count {
            f.head("pgrepl_archive_archived_total", "counter", "WAL files the primary archived (pg_stat_archiver).");
            f.sample("pgrepl_archive_archived_total", &[], n as f64);
        }
        f.head("pgrepl_archive_failing", "gauge", "Whether the primary's last archive attempt failed (1) or not (0).");
        f.sample("pgrepl_archive_failing", &[], f64::from(u8::from(a.failing)));
        if let Some(n) = a.failed_count {
            f.head(
                "pgrepl_archive_failed_total",
                "counter",
                "Failed archive attempts on the primary (pg_stat_archiver).",
            );
            f.sample("pgrepl_archive_failed_total", &[], n as f64);
        }
    }
    f.head("pgrepl_ha_paused", "gauge", "Whether automatic failover is paused (`pgrepl pause`): 1, or 0.");
    f.sample("pgrepl_ha_paused", &[], f64::from(u8::from(s.paused.is_some())));
    if let Some(d) = &s.durability {
        f.head(
            "pgrepl_durability_state",
            "gauge",
            "Synchronous replication state: 1 on the series of the state it is in (ok, degraded, blocked).",
        );
        f.sample(
            "pgrepl_durability_state",
            &[("mode", d["mode"].as_str().unwrap_or("unknown")), ("state", d["state"].as_str().unwrap_or("unknown"))],
            1.0,
        );
    }
    f.head(
        "pgrepl_supervisor_restarts_total",
        "counter",
        "Times the supervisor restarted the node's postgres after it died.",
    );
    for (node, n) in &snap.restarts {
        f.sample("pgrepl_supervisor_restarts_total", &[("node", node)], f64::from(*n));
    }
    f.head("pgrepl_moves_total", "counter", "Moves of the primary this cluster has seen (pgrepl history), by kind.");
    for kind in ["switchover", "failover"] {
        let n = snap.moves.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n);
        f.sample("pgrepl_moves_total", &[("kind", kind)], n as f64);
    }
    f.head(
        "pgrepl_node_moves_total",
        "counter",
        "Moves of the primary that made this node the primary (pgrepl history), by kind.",
    );
    for (node, kind, n) in &snap.moves_to {
        f.sample("pgrepl_node_moves_total", &[("node", node), ("kind", kind)], *n as f64);
    }
    let t = &snap.thresholds;
    f.head("pgrepl_lag_warning_seconds", "gauge", "Replay lag that makes a replica WARNING ([monitor] warn_lag).");
    f.sample("pgrepl_lag_warning_seconds", &[], t.warn_lag.as_secs_f64());
    f.head("pgrepl_lag_critical_seconds", "gauge", "Replay lag that makes a replica CRITICAL ([monitor] crit_lag).");
    f.sample("pgrepl_lag_critical_seconds", &[], t.crit_lag.as_secs_f64());
    f.head(
        "pgrepl_slot_retained_critical_bytes",
        "gauge",
        "WAL a slot may hold back before it is CRITICAL ([monitor] crit_slot_retained).",
    );
    f.sample("pgrepl_slot_retained_critical_bytes", &[], t.crit_slot_retained.0 as f64);
    f.head("pgrepl_build_info", "gauge", "pgrepl's version and the commit it was built from (always 1).");
    f.sample("pgrepl_build_info", &[("version", env!("CARGO_PKG_VERSION")), ("commit", env!("PGREPL_COMMIT"))], 1.0);
    f.head("pgrepl_snapshot_timestamp_seconds", "gauge", "Unix time the served snapshot was taken.");
    f.sample("pgrepl_snapshot_timestamp_seconds", &[], (snap.taken_unix * 1000.0).round() / 1000.0);
    f.head("pgrepl_snapshot_age_seconds", "gauge", "Age of the served snapshot.");
    f.sample("pgrepl_snapshot_age_seconds", &[], ((now_unix - snap.taken_unix).max(0.0) * 1000.0).round() / 1000.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full exposition of the example snapshot; `tests/it` also runs it
    /// through `promtool check metrics`.
    #[test]
    fn example_snapshot_renders_exactly() {
        let text = render(&crate::observe::snapshot::example(), 1_795_334_401.5);
        // The build's own version and commit change with every commit.
        let text = text
            .replace(&format!("commit=\"{}\"", env!("PGREPL_COMMIT")), "commit=\"COMMIT\"")
            .replace(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), "version=\"VERSION\"");
        let expected = include_str!("../../tests/fixtures/metrics.txt");
        assert_eq!(text, expected);
    }

    /// The example shows every family, so its rendering (the fixture) is
    /// the list of what pgrepl exports: the Grafana dashboard's test and
    /// the alert rules' test check their names against it.
    #[test]
    fn the_example_renders_every_family() {
        let code = include_str!("metrics.rs").split("#[cfg(test)]").next().unwrap();
        let families = code.matches("f.head(").count();
        let text = render(&crate::observe::snapshot::example(), 0.0);
        assert_eq!(text.matches("# TYPE ").count(), families, "a family the example leaves out:\n{text}");
    }

    #[test]
    fn unknown_values_are_left_out_not_zero() {
        let mut s = crate::observe::snapshot::example();
        if let Some(r) = s.status.nodes[2].replication.as_mut() {
            r.lag_seconds.replay = None;
        }
        let text = render(&s, 0.0);
        assert!(!text.contains("pgrepl_replication_lag_seconds{node=\"pg-3\",kind=\"replay\"}"));
        assert!(text.contains("pgrepl_replication_lag_bytes{node=\"pg-3\",kind=\"replay\"} 16777312"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
