//! The drill's report: per round and summarised, as JSON (`--json`) and as
//! a table for the terminal. Rendering is pure.

use serde::Serialize;

use super::measure::{spread, Round, Spread};
use super::Options;
use crate::store::ctx::Ctx;

/// What `--durability-check` found on one node.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct NodeCheck {
    pub node: String,
    /// Acknowledged ids absent on this node (null: it could not be read).
    pub missing: Option<usize>,
}

/// Over the rounds that recovered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Summary {
    pub rto_seconds: Option<Spread>,
    pub write_gap_seconds: Option<Spread>,
    pub replicas_streaming_seconds: Option<Spread>,
    pub lost_acknowledged: usize,
    pub in_doubt_committed: usize,
    pub dual_primary_samples: usize,
    pub writes_acknowledged: usize,
    pub samples: usize,
}

/// The whole drill.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub cluster: String,
    pub mode: &'static str,
    pub fault: &'static str,
    pub rounds_asked: u32,
    pub rate_per_second: u32,
    /// How long a freeze or an isolation lasted.
    pub fault_seconds: Option<f64>,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_seconds: f64,
    /// Every round recovered, no write acknowledged was lost, and no two
    /// primaries were ever seen at once.
    pub ok: bool,
    pub rounds: Vec<Round>,
    pub summary: Summary,
    pub durability_check: Option<Vec<NodeCheck>>,
    /// What the drill could not put back, and how to fix it.
    pub left: Option<String>,
}

impl Report {
    pub(crate) fn new(
        ctx: &Ctx,
        o: &Options,
        started: f64,
        took: f64,
        rounds: Vec<Round>,
        durability_check: Option<Vec<NodeCheck>>,
        left: Option<String>,
    ) -> Report {
        let ok_rounds: Vec<&Round> = rounds.iter().filter(|r| r.ok).collect();
        let summary = Summary {
            rto_seconds: spread(ok_rounds.iter().filter_map(|r| r.rto_seconds)),
            write_gap_seconds: spread(ok_rounds.iter().map(|r| r.write_gap_seconds)),
            replicas_streaming_seconds: spread(ok_rounds.iter().filter_map(|r| r.replicas_streaming_seconds)),
            lost_acknowledged: rounds.iter().map(|r| r.lost_acknowledged).sum(),
            in_doubt_committed: rounds.iter().map(|r| r.in_doubt_committed).sum(),
            dual_primary_samples: rounds.iter().map(|r| r.dual_primary_samples).sum(),
            writes_acknowledged: rounds.iter().map(|r| r.writes_acknowledged).sum(),
            samples: rounds.iter().map(|r| r.samples).sum(),
        };
        let durable = durability_check.as_ref().is_none_or(|c| c.iter().all(|n| n.missing == Some(0)));
        let ok = rounds.len() == o.rounds as usize
            && rounds.iter().all(|r| r.ok)
            && summary.lost_acknowledged == 0
            && summary.dual_primary_samples == 0
            && durable
            && left.is_none();
        Report {
            cluster: ctx.cfg.cluster_name.clone(),
            mode: if ctx.cfg.etcd.is_some() { "across hosts" } else { "one machine" },
            fault: o.fault.name(),
            rounds_asked: o.rounds,
            rate_per_second: o.rate,
            fault_seconds: matches!(
                o.fault,
                super::Fault::FreezePostgres | super::Fault::IsolatePrimary | super::Fault::FreezeHost
            )
            .then_some(o.freeze_for.as_secs_f64()),
            started: crate::domain::time::rfc3339(started),
            duration_seconds: (took * 10.0).round() / 10.0,
            ok,
            rounds,
            summary,
            durability_check,
            left,
        }
    }
}

fn secs(x: Option<f64>) -> String {
    x.map_or("-".into(), |s| format!("{s:.2}s"))
}

fn bytes(x: Option<u64>) -> String {
    match x {
        None => "-".into(),
        Some(b) if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1 << 20)),
        Some(b) if b >= 1 << 10 => format!("{:.1} kB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
    }
}

fn tl(x: Option<i32>) -> String {
    x.map_or("?".into(), |t| t.to_string())
}

/// The report as a table and a few lines, for the terminal.
pub(crate) fn render(r: &Report) -> String {
    let mut rows = vec![[
        "round",
        "RTO",
        "write gap",
        "lost",
        "in-doubt",
        "2 primaries",
        "timeline",
        "replicas back",
        "max lag",
        "primary",
    ]
    .map(String::from)];
    for x in &r.rounds {
        rows.push([
            x.round.to_string(),
            secs(x.rto_seconds),
            format!("{:.2}s", x.write_gap_seconds),
            x.lost_acknowledged.to_string(),
            x.in_doubt_committed.to_string(),
            format!("{}/{}", x.dual_primary_samples, x.samples),
            format!("{} -> {}", tl(x.timeline_before), tl(x.timeline_after)),
            secs(x.replicas_streaming_seconds),
            bytes(x.max_replica_lag_bytes),
            format!("{} -> {}", x.primary_before, x.primary_after.as_deref().unwrap_or("?")),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut s = format!(
        "drill: {} on {} ({}), {} round(s) at {}/s{}, {:.1}s\n\n",
        r.fault,
        r.cluster,
        r.mode,
        r.rounds_asked,
        r.rate_per_second,
        r.fault_seconds.map_or(String::new(), |f| format!(", for {f}s")),
        r.duration_seconds
    );
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    for x in r.rounds.iter().filter_map(|x| x.error.as_ref().map(|e| (x.round, e))) {
        s.push_str(&format!("round {}: FAILED: {}\n", x.0, x.1));
    }
    let spread = |name: &str, v: &Option<Spread>| {
        v.map(|v| format!("{name} median {:.2}s (min {:.2}s, max {:.2}s)", v.median, v.min, v.max))
    };
    let sm = &r.summary;
    let spreads: Vec<String> = [
        spread("RTO", &sm.rto_seconds),
        spread("write gap", &sm.write_gap_seconds),
        spread("replicas streaming again", &sm.replicas_streaming_seconds),
    ]
    .into_iter()
    .flatten()
    .collect();
    s.push_str(&format!(
        "\n{}\nacknowledged writes: {}, lost: {}; committed though the client saw an error: {}; samples with two writable primaries: {} of {}\n",
        spreads.join("; "),
        sm.writes_acknowledged,
        sm.lost_acknowledged,
        sm.in_doubt_committed,
        sm.dual_primary_samples,
        sm.samples
    ));
    if let Some(checks) = &r.durability_check {
        let each: Vec<String> = checks
            .iter()
            .map(|c| format!("{} {}", c.node, c.missing.map_or("unreadable".into(), |m| format!("missing {m}"))))
            .collect();
        s.push_str(&format!("durability check: {}\n", each.join(", ")));
    }
    if let Some(left) = &r.left {
        s.push_str(&format!("left behind: {left}\n"));
    }
    s.push_str(if r.ok { "result: PASS\n" } else { "result: FAIL\n" });
    s
}
