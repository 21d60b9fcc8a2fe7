//! The read endpoints (GET): role checks for load balancers, `/cluster`
//! and `/metrics`. A pure function of the monitor's latest snapshot and the
//! clock; nothing here queries postgres, so a slow node never slows a
//! health check.

use std::time::Duration;

use serde_json::json;

use crate::domain::units::{parse_duration, ByteSize};
use crate::observe::document::StatusDocument;
use crate::observe::health::Level;
use crate::observe::snapshot::Snapshot;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub code: u16,
    pub content_type: &'static str,
    pub body: String,
    /// More headers (the dashboard's policy, a redirect's Location).
    pub headers: &'static [(&'static str, &'static str)],
}

impl Answer {
    pub(super) fn json(code: u16, v: serde_json::Value) -> Self {
        Answer { code, content_type: "application/json", body: v.to_string() + "\n", headers: &[] }
    }
}

/// A `?lag=` bound: bytes or time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LagBound {
    Bytes(u64),
    Seconds(f64),
}

/// Parse `10MB`, `16384`, `5s`, `500ms`.
pub(crate) fn parse_lag(s: &str) -> Option<LagBound> {
    // A time unit ends in s, m or h; a size ends in B or a digit.
    if s.ends_with(['s', 'm', 'h']) {
        parse_duration(s).ok().map(|d| LagBound::Seconds(d.as_secs_f64()))
    } else {
        ByteSize::parse(s).ok().map(|b| LagBound::Bytes(b.0))
    }
}

/// How old a snapshot may be before role checks refuse to vouch for it.
pub(crate) fn stale_after(interval: Duration) -> f64 {
    (interval.as_secs_f64() * 3.0).max(5.0)
}

/// Answer one request for `node`. Pure: the snapshot and the clock are inputs.
pub(crate) fn answer(node: &str, path_and_query: &str, snap: Option<&Snapshot>, now: f64, stale: f64) -> Answer {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let Some(snap) = snap else {
        return Answer::json(503, json!({"node": node, "reason": "no snapshot yet: the monitor has not run"}));
    };
    let age = ((now - snap.taken_unix).max(0.0) * 1000.0).round() / 1000.0;
    match path {
        "/metrics" => {
            return Answer {
                code: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: crate::observe::metrics::render(snap, now),
                headers: &[],
            }
        }
        "/cluster" => {
            let doc = serde_json::to_value(StatusDocument::new(&snap.status, &snap.health)).unwrap_or_default();
            let mut doc = doc;
            doc["snapshot_age_seconds"] = json!(age);
            return Answer::json(200, doc);
        }
        _ => {}
    }
    let Some(n) = snap.status.nodes.iter().find(|n| n.name == node) else {
        return Answer::json(503, json!({"node": node, "reason": "node not in snapshot"}));
    };
    let lag_bytes = n.replication.as_ref().and_then(|r| r.lag_bytes.replay);
    let lag_seconds = n.replication.as_ref().and_then(|r| r.lag_seconds.replay);
    let health = snap.health.node(node).map_or(Level::Healthy, |h| h.level);
    let body = |reason: &str| {
        json!({
            "node": node, "role": n.role, "state": n.state, "health": health,
            "timeline": n.timeline, "replay_lag_bytes": lag_bytes, "replay_lag_seconds": lag_seconds,
            "snapshot_age_seconds": age, "reason": reason,
        })
    };
    let verdict = |ok: bool, why: &str| Answer::json(if ok { 200 } else { 503 }, body(why));
    if path == "/liveness" {
        // For an orchestrator's liveness probe: is the supervisor's loop
        // alive, whatever postgres is doing (restarting it is its job).
        let ok = age <= stale;
        return verdict(ok, if ok { "the supervisor's monitor is running" } else { "the monitor's snapshot is stale" });
    }
    if age > stale && path != "/health" {
        return verdict(false, "snapshot is stale: the monitor cannot reach postgres");
    }
    match path {
        "/primary" | "/read-write" | "/master" | "/leader" => {
            let ok = n.is_writable_primary();
            verdict(ok, if ok { "writable primary" } else { "not the writable primary" })
        }
        "/replica" | "/standby" => {
            if !n.is_streaming_replica() {
                return verdict(false, "not a streaming replica");
            }
            let lag = query.split('&').find_map(|kv| kv.strip_prefix("lag="));
            match lag.map(|l| (l, parse_lag(l))) {
                None => verdict(true, "streaming replica"),
                Some((l, None)) => Answer::json(
                    400,
                    json!({"node": node, "reason": format!("cannot read lag={l}; use e.g. lag=16MB or lag=5s")}),
                ),
                Some((_, Some(LagBound::Bytes(max)))) => match lag_bytes {
                    Some(b) => verdict(b <= max, &format!("replay lag {b} bytes, bound {max}")),
                    None => verdict(false, "replay lag unknown"),
                },
                Some((_, Some(LagBound::Seconds(max)))) => match lag_seconds {
                    Some(s) => verdict(s <= max, &format!("replay lag {s:.3}s, bound {max}s")),
                    None => verdict(false, "replay lag unknown"),
                },
            }
        }
        // Patroni's /sync and /async: a streaming standby that does (not)
        // confirm commits (`sync_state` sync or quorum).
        "/sync" | "/synchronous" | "/async" | "/asynchronous" => {
            let sync = n
                .replication
                .as_ref()
                .and_then(|r| r.sync_state.as_deref())
                .is_some_and(|s| matches!(s, "sync" | "quorum"));
            let want_sync = matches!(path, "/sync" | "/synchronous");
            let ok = n.is_streaming_replica() && sync == want_sync;
            let what = if want_sync { "synchronous" } else { "asynchronous" };
            verdict(ok, &if ok { format!("{what} standby") } else { format!("not a streaming {what} standby") })
        }
        "/read-only" => {
            let ok = n.is_writable_primary() || n.is_streaming_replica();
            verdict(ok, if ok { "serves reads" } else { "does not serve reads" })
        }
        "/readiness" => {
            // Ready for traffic: the writable primary, or a running replica.
            let ok = n.is_writable_primary()
                || (n.state == crate::observe::status::NodeState::Running
                    && n.role == Some(crate::config::Role::Replica));
            verdict(ok, if ok { "postgres is up in its role" } else { "postgres is not up" })
        }
        "/health" | "/" => {
            let ok = n.state == crate::observe::status::NodeState::Running && age <= stale;
            verdict(ok, if ok { "postgres is running" } else { "postgres is not running (or the snapshot is stale)" })
        }
        _ => Answer::json(
            404,
            json!({"reason": format!("no endpoint {path}; try /primary, /replica, /sync, /async, /read-only, /health, /liveness, /readiness, /cluster, /metrics")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::snapshot::example;

    const NOW: f64 = 1_795_334_401.0;

    fn code(node: &str, path: &str) -> u16 {
        answer(node, path, Some(&example()), NOW, 5.0).code
    }

    #[test]
    fn role_endpoints_follow_the_snapshot() {
        // The example's replicas are asynchronous.
        assert_eq!(code("pg-2", "/async"), 200);
        assert_eq!(code("pg-2", "/sync"), 503);
        assert_eq!(code("pg-1", "/async"), 503, "a primary is no standby");
        assert_eq!(code("pg-1", "/primary"), 200);
        assert_eq!(code("pg-1", "/read-write"), 200);
        assert_eq!(code("pg-2", "/primary"), 503);
        assert_eq!(code("pg-1", "/replica"), 503);
        assert_eq!(code("pg-2", "/replica"), 200);
        assert_eq!(code("pg-1", "/read-only"), 200);
        assert_eq!(code("pg-3", "/read-only"), 200);
        assert_eq!(code("pg-3", "/health"), 200);
        assert_eq!(code("pg-3", "/nope"), 404);
        assert_eq!(code("pg-1", "/readiness"), 200);
        assert_eq!(code("pg-3", "/readiness"), 200);
    }

    #[test]
    fn liveness_is_about_the_supervisor_readiness_about_postgres() {
        let mut snap = example();
        snap.status.nodes[1].state = crate::observe::status::NodeState::Stopped;
        snap.status.nodes[1].role = None;
        let at = |path: &str, now: f64| answer("pg-2", path, Some(&snap), now, 5.0).code;
        assert_eq!(at("/liveness", NOW), 200, "postgres down, supervisor alive");
        assert_eq!(at("/readiness", NOW), 503);
        assert_eq!(at("/liveness", NOW + 60.0), 503, "stale snapshot: the supervisor is stuck");
    }

    #[test]
    fn replica_lag_bound_in_bytes_or_seconds() {
        // pg-3 is 16777312 bytes and 75.25 s behind.
        assert_eq!(code("pg-3", "/replica?lag=32MB"), 200);
        assert_eq!(code("pg-3", "/replica?lag=16MB"), 503);
        assert_eq!(code("pg-3", "/replica?lag=80s"), 200);
        assert_eq!(code("pg-3", "/replica?lag=1m"), 503);
        assert_eq!(code("pg-2", "/replica?lag=0"), 200);
        assert_eq!(code("pg-3", "/replica?lag=soon"), 400);
    }

    #[test]
    fn stale_or_missing_snapshot_vouches_for_nothing() {
        assert_eq!(answer("pg-1", "/primary", None, NOW, 5.0).code, 503);
        let a = answer("pg-1", "/primary", Some(&example()), NOW + 60.0, 5.0);
        assert_eq!(a.code, 503);
        assert!(a.body.contains("snapshot is stale"), "{}", a.body);
    }

    #[test]
    fn cluster_and_metrics_are_served_from_the_snapshot() {
        let a = answer("pg-2", "/cluster", Some(&example()), NOW, 5.0);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["snapshot_age_seconds"], 1.0);
        assert_eq!(v["health"]["level"], "warning");
        let m = answer("pg-2", "/metrics", Some(&example()), NOW, 5.0);
        assert!(m.content_type.starts_with("text/plain; version=0.0.4"));
        assert!(m.body.contains("pgrepl_snapshot_age_seconds 1\n"));
    }

    #[test]
    fn lag_bounds_parse() {
        assert_eq!(parse_lag("10MB"), Some(LagBound::Bytes(10 << 20)));
        assert_eq!(parse_lag("4096"), Some(LagBound::Bytes(4096)));
        assert_eq!(parse_lag("5s"), Some(LagBound::Seconds(5.0)));
        assert_eq!(parse_lag("500ms"), Some(LagBound::Seconds(0.5)));
        assert_eq!(parse_lag("fast"), None);
    }
}
