//! `--report drill.html`: the report as one self-contained page (inline
//! CSS and SVG, nothing fetched, no script), with a timeline per round:
//! writes acknowledged and failed per 100 ms, the fault, the moment
//! writes came back, the moment every replica streamed again, and the
//! spans where writes failed. Pure: a function of the report.

use std::fmt::Write as _;

use super::measure::Round;
use super::report::Report;

/// `<`, `>`, `&` and quotes, for text from the config or errors.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn secs(x: Option<f64>) -> String {
    x.map_or("-".into(), |s| format!("{s:.2} s"))
}

const W: f64 = 960.0;
const H: f64 = 180.0;
/// Left margin for the axis labels; the plot's top and bottom margins.
const LEFT: f64 = 40.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 24.0;

/// One round's timeline.
fn svg(r: &Round) -> String {
    let t = &r.timeline;
    let n = t.acknowledged.len().max(1);
    let span = n as f64 * t.bucket_seconds;
    let x = |secs: f64| LEFT + (secs - t.from_seconds) / span * (W - LEFT - 8.0);
    let peak = t.acknowledged.iter().chain(&t.failed).copied().max().unwrap_or(1).max(1) as f64;
    let plot = H - TOP - BOTTOM;
    let bar_w = ((W - LEFT - 8.0) / n as f64).max(1.0);
    let mut s = format!(
        r#"<svg class="round" data-round="{}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="round {} timeline">"#,
        r.round, r.round
    );
    // Spans where writes failed, behind everything else.
    let mut i = 0;
    while i < n {
        if t.failed.get(i).copied().unwrap_or(0) > 0 {
            let start = i;
            while i < n && t.failed.get(i).copied().unwrap_or(0) > 0 {
                i += 1;
            }
            let (a, b) =
                (x(t.from_seconds + start as f64 * t.bucket_seconds), x(t.from_seconds + i as f64 * t.bucket_seconds));
            let _ = write!(
                s,
                r#"<rect class="error" x="{a:.1}" y="{TOP}" width="{:.1}" height="{plot}"/>"#,
                (b - a).max(1.0)
            );
        } else {
            i += 1;
        }
    }
    for (i, (ok, bad)) in t.acknowledged.iter().zip(&t.failed).enumerate() {
        let at = x(t.from_seconds + i as f64 * t.bucket_seconds);
        let h_ok = f64::from(*ok) / peak * plot;
        if *ok > 0 {
            let _ = write!(
                s,
                r#"<rect class="acked" x="{at:.1}" y="{:.1}" width="{bar_w:.1}" height="{h_ok:.1}"/>"#,
                TOP + plot - h_ok
            );
        }
        if *bad > 0 {
            let h = f64::from(*bad) / peak * plot;
            let _ = write!(
                s,
                r#"<rect class="failed" x="{at:.1}" y="{:.1}" width="{bar_w:.1}" height="{h:.1}"/>"#,
                TOP + plot - h_ok - h
            );
        }
    }
    let _ = write!(
        s,
        r#"<line class="axis" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
        TOP + plot,
        W - 8.0,
        TOP + plot
    );
    // Whole seconds along the axis.
    let mut sec = t.from_seconds.ceil();
    while sec <= t.from_seconds + span {
        let _ = write!(s, r#"<text class="tick" x="{:.1}" y="{:.1}">{sec:.0}s</text>"#, x(sec), H - 6.0);
        sec += if span > 30.0 { 5.0 } else { 1.0 };
    }
    let _ = write!(s, r#"<text class="tick" x="2" y="{:.1}">{peak:.0}</text>"#, TOP + 10.0);
    let mut marker = |class: &str, at: f64, label: &str| {
        // Near the right edge the label goes to the left of its line.
        let (dx, anchor) = if x(at) > W - 160.0 { (-3.0, "end") } else { (3.0, "start") };
        let _ = write!(
            s,
            r#"<line class="{class}" x1="{:.1}" y1="{}" x2="{:.1}" y2="{:.1}"/><text class="label {class}" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            x(at),
            TOP - 4.0,
            x(at),
            TOP + plot,
            x(at) + dx,
            TOP - 8.0,
            esc(label)
        );
    };
    marker("fault", 0.0, "fault");
    if let Some(rto) = r.rto_seconds {
        let who = r.primary_after.as_deref().unwrap_or("?");
        marker("promotion", rto, &format!("writes on {who}"));
    }
    if let Some(back) = r.replicas_streaming_seconds {
        marker("streaming", back, "replicas streaming");
    }
    s.push_str("</svg>");
    s
}

/// The whole page.
pub(crate) fn render(r: &Report) -> String {
    let mut rows = String::new();
    for x in &r.rounds {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{:.2} s</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{} &rarr; {}</td><td>{}</td><td>{} &rarr; {}</td><td>{}</td></tr>",
            x.round,
            secs(x.rto_seconds),
            x.write_gap_seconds,
            x.lost_acknowledged,
            x.in_doubt_committed,
            x.dual_primary_samples,
            x.samples,
            x.timeline_before.map_or("?".into(), |t| t.to_string()),
            x.timeline_after.map_or("?".into(), |t| t.to_string()),
            secs(x.replicas_streaming_seconds),
            esc(&x.primary_before),
            esc(x.primary_after.as_deref().unwrap_or("?")),
            if x.ok { "ok".to_string() } else { format!("FAILED: {}", esc(x.error.as_deref().unwrap_or(""))) }
        );
    }
    let mut rounds = String::new();
    for x in &r.rounds {
        let _ = write!(
            rounds,
            "<figure><figcaption>Round {}: {} on {} &mdash; RTO {}, write gap {:.2} s</figcaption>{}</figure>",
            x.round,
            esc(r.fault),
            esc(&x.primary_before),
            secs(x.rto_seconds),
            x.write_gap_seconds,
            svg(x)
        );
    }
    let verdict = if r.ok { "PASS" } else { "FAIL" };
    let left = r.left.as_deref().map_or(String::new(), |l| format!("<p class=\"fail\">Left behind: {}</p>", esc(l)));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgrepl drill: {fault} on {cluster}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
.pass {{ color: #176b2c; font-weight: bold; }} .fail {{ color: #a11; font-weight: bold; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: bold; margin-bottom: 4px; }}
svg {{ background: #fafafa; border: 1px solid #ddd; }}
rect.acked {{ fill: #3b7dd8; }} rect.failed {{ fill: #d83b3b; }} rect.error {{ fill: #fbe3e3; }}
line.axis {{ stroke: #888; }} text.tick {{ font-size: 10px; fill: #666; }}
line.fault {{ stroke: #d83b3b; stroke-width: 2; }} line.promotion {{ stroke: #176b2c; stroke-width: 2; }}
line.streaming {{ stroke: #7a4bd8; stroke-width: 2; stroke-dasharray: 4 3; }}
text.label {{ font-size: 11px; }} text.fault {{ fill: #d83b3b; }} text.promotion {{ fill: #176b2c; }} text.streaming {{ fill: #7a4bd8; }}
</style></head><body>
<h1>Failover drill: {fault} on {cluster}</h1>
<p>{mode}, {rounds} round(s), writer at {rate}/s, started {started}, {took:.1} s. Result: <span class="{verdict_class}">{verdict}</span></p>
<table><tr><th>round</th><th>RTO</th><th>write gap</th><th>lost</th><th>in-doubt</th><th>2 primaries</th><th>timeline</th><th>replicas back</th><th>primary</th><th></th></tr>
{rows}</table>
<p>Acknowledged writes: {acked}, lost: {lost}; committed though the client saw an error: {doubt}; samples with two writable primaries: {dual} of {samples}.</p>
{left}
<p>Each timeline: writes acknowledged (blue) and failed (red) per 100 ms, by when they were sent; seconds from the fault.</p>
{rounds_svg}
</body></html>
"#,
        fault = esc(r.fault),
        cluster = esc(&r.cluster),
        mode = r.mode,
        rounds = r.rounds_asked,
        rate = r.rate_per_second,
        started = esc(&r.started),
        took = r.duration_seconds,
        verdict_class = verdict.to_lowercase(),
        acked = r.summary.writes_acknowledged,
        lost = r.summary.lost_acknowledged,
        doubt = r.summary.in_doubt_committed,
        dual = r.summary.dual_primary_samples,
        samples = r.summary.samples,
        rounds_svg = rounds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::drill::measure::Timeline;

    fn round(n: usize) -> Round {
        Round {
            round: n,
            ok: true,
            error: None,
            fault_at_unix: 1_795_334_401.0,
            rto_seconds: Some(0.4),
            write_gap_seconds: 0.3,
            lost_acknowledged: 0,
            in_doubt_committed: 0,
            writes_acknowledged: 20,
            writes_failed: 1,
            dual_primary_samples: 0,
            samples: 30,
            timeline_before: Some(1),
            timeline_after: Some(2),
            primary_before: "pg-1".into(),
            primary_after: Some("pg-<2>".into()),
            replicas_streaming_seconds: Some(1.2),
            max_replica_lag_bytes: Some(100),
            timeline: Timeline {
                from_seconds: -1.0,
                bucket_seconds: 0.1,
                acknowledged: vec![5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 0, 0, 0, 2, 5, 5, 5, 5, 5],
                failed: vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
            },
        }
    }

    #[test]
    fn each_round_gets_a_timeline_with_its_markers_and_error_spans() {
        let s = svg(&round(1));
        assert!(s.starts_with(r#"<svg class="round" data-round="1""#), "{s}");
        assert_eq!(s.matches(r#"<line class="fault""#).count(), 1);
        assert_eq!(s.matches(r#"<line class="promotion""#).count(), 1);
        assert_eq!(s.matches(r#"<line class="streaming""#).count(), 1);
        assert_eq!(s.matches(r#"<rect class="error""#).count(), 1, "buckets 11 and 12 make one span");
        assert_eq!(s.matches(r#"<rect class="acked""#).count(), 17);
        assert!(s.contains("writes on pg-&lt;2&gt;"), "text is escaped: {s}");
        // The picture runs from -1 s to 1 s: the fault is half way across.
        assert!(s.contains(r#"<line class="fault" x1="496.0""#), "{s}");
    }
}
