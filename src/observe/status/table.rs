//! The human form of a status snapshot: one row per node, then the slots,
//! then every problem with its reason.

use super::ClusterStatus;
use crate::observe::health::{human, Level, Report};

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Left-aligned columns, two spaces apart; the first row is the header.
pub(crate) fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A replica's lag, one unit per kind everywhere: bytes as the slot table
/// shows them (`16.0MB`), seconds with an `s`; `unknown` when it is.
fn lag(r: &super::Replication) -> String {
    let b = r.lag_bytes.replay.map_or("unknown".into(), human);
    let s = r.lag_seconds.replay.map_or("unknown".into(), |s| format!("{s:.1}s"));
    format!("{b} {s}")
}

/// Render the table: the default fits 100 columns; `wide` adds the pid,
/// port and every LSN.
pub(crate) fn render(s: &ClusterStatus, h: &Report, wide: bool) -> String {
    let head: &[&str] = if wide {
        &[
            "NODE",
            "ROLE",
            "STATE",
            "HEALTH",
            "PID",
            "PORT",
            "TL",
            "CURRENT",
            "RECEIVED",
            "REPLAYED",
            "UPSTREAM",
            "REPLICATION",
            "LAG",
        ]
    } else {
        &["NODE", "ROLE", "STATE", "HEALTH", "TL", "LSN", "UPSTREAM", "SYNC", "LAG"]
    };
    let mut rows = vec![head.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for n in &s.nodes {
        let r = n.replication.as_ref();
        let health = h.node(&n.name).map_or(Level::Healthy, |x| x.level);
        let role = n.role.map_or("unknown".to_string(), |r| r.to_string());
        let lag = r.map_or("-".into(), lag);
        let upstream = opt(&n.upstream);
        let row = if wide {
            vec![
                n.name.clone(),
                role,
                n.state.to_string(),
                format!("{health:?}").to_lowercase(),
                opt(&n.pid),
                n.port.to_string(),
                opt(&n.timeline),
                opt(&n.current_lsn),
                opt(&n.received_lsn),
                opt(&n.replayed_lsn),
                upstream,
                r.map_or("-".into(), |r| format!("{}/{}", opt(&r.state), opt(&r.sync_state))),
                lag,
            ]
        } else {
            // The primary's position, or how far a standby has replayed.
            let lsn = n.current_lsn.or(n.replayed_lsn);
            // Streaming standbys show how they confirm commits; others their state.
            let sync = r.map_or("-".into(), |r| match r.state.as_deref() {
                Some("streaming") => opt(&r.sync_state),
                _ => opt(&r.state),
            });
            vec![
                n.name.clone(),
                role,
                n.state.to_string(),
                format!("{health:?}").to_lowercase(),
                opt(&n.timeline),
                opt(&lsn),
                upstream,
                sync,
                lag,
            ]
        };
        rows.push(row);
    }
    let mut out = format!("cluster {} (primary: {}) at {}: {}\n", s.cluster, s.primary, s.timestamp, h.level.nagios());
    if let Some(p) = s.paused.as_ref().filter(|_| s.ha.is_none()) {
        // With a supervisor, its sentence already says so.
        out.push_str(&format!("ha: paused {p} (`pgrepl resume` ends it)\n"));
    }
    if let Some(ha) = &s.ha {
        out.push_str(&format!("ha: {ha}\n"));
    }
    if let Some(d) = &s.durability {
        out.push_str(&format!(
            "durability: {} ({})\n",
            d["message"].as_str().unwrap_or("?"),
            d["mode"].as_str().unwrap_or("?")
        ));
    }
    if let Some(m) = &s.last_move {
        out.push_str(&format!("last move: {m}\n"));
    }
    for n in &s.needs_reclone {
        out.push_str(&format!("{n} needs a re-clone: run `pgrepl reclone {n}`\n"));
    }
    for n in &s.nodes {
        if let Some(p) = n.pending_restart.as_ref().filter(|p| !p.is_empty()) {
            out.push_str(&format!(
                "{}: restart pending for {}: run `pgrepl restart {}`\n",
                n.name,
                p.join(", "),
                n.name
            ));
        }
    }
    out.push_str(&table(rows));
    if !s.slots.is_empty() {
        let mut rows = vec![["SLOT", "ACTIVE", "WAL STATUS", "RETAINED", "SAFE WAL SIZE"].map(String::from).to_vec()];
        for sl in &s.slots {
            rows.push(vec![
                sl.slot.clone(),
                sl.active.to_string(),
                opt(&sl.wal_status),
                sl.retained_bytes.map_or("-".into(), human),
                sl.safe_wal_size.map_or("-".into(), |b| human(b.max(0) as u64)),
            ]);
        }
        out.push('\n');
        out.push_str(&table(rows));
    }
    let problems: Vec<String> = h
        .cluster
        .iter()
        .cloned()
        .chain(h.nodes.iter().flat_map(|n| n.reasons.iter().map(move |r| format!("{}: {r}", n.node))))
        .collect();
    if !problems.is_empty() {
        out.push('\n');
        for p in problems {
            out.push_str(&format!("! {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_fits_100_columns_and_wide_shows_everything() {
        let snap = crate::observe::snapshot::example();
        let text = render(&snap.status, &snap.health, false);
        for l in text.lines() {
            assert!(l.len() <= 100, "{} columns: {l}", l.len());
        }
        assert!(
            text.contains("pg-3  replica  running  warning  1   0/4000000  pg-1      async  16.0MB 75.2s"),
            "{text}"
        );
        let wide = render(&snap.status, &snap.health, true);
        assert!(wide.contains("PID") && wide.contains("RECEIVED") && wide.contains("16.0MB 75.2s"), "{wide}");
        // One unit per kind: the lag as the slot table shows bytes.
        assert!(text.contains("0B 0.0s") && text.contains("RETAINED"), "{text}");
    }
}
