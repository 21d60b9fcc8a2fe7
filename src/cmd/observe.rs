//! The observing commands: `status [--json] [--watch]`, `check` (Nagios
//! plugin conventions) and `monitor` (continuous, human or JSON lines).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::observe::document::StatusDocument;
use crate::observe::health::{self, Level, Thresholds};
use crate::observe::report;
use crate::observe::status::gather::Gatherer;
use crate::observe::status::table;
use crate::store::ctx::Ctx;

fn json<T: Serialize>(v: &T, pretty: bool) -> Result<String> {
    let r = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) };
    r.map_err(|e| Error::Other(e.to_string()))
}

/// `pgrepl status`.
pub(crate) async fn status(ctx: &Arc<Ctx>, as_json: bool, wide: bool, watch: bool, interval: Duration) -> Result<()> {
    let g = Gatherer::observer(ctx.clone());
    let t = Thresholds::from(&ctx.cfg.monitor);
    loop {
        let s = g.gather().await?;
        let h = health::evaluate(&s, &t);
        let text = if as_json { json(&StatusDocument::new(&s, &h), true)? + "\n" } else { table::render(&s, &h, wide) };
        if watch && std::io::stdout().is_terminal() {
            // Redraw in place: home, clear screen.
            print!("\x1b[H\x1b[2J{text}");
        } else {
            print!("{text}");
        }
        let _ = std::io::stdout().flush();
        if !watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// `pgrepl check`: one line, Nagios exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
pub(crate) async fn check(ctx: &Arc<Ctx>) -> Result<()> {
    let s = Gatherer::observer(ctx.clone()).gather().await.map_err(|e| unknown(&e))?;
    let m = &ctx.cfg.monitor;
    let h = health::evaluate(&s, &Thresholds::from(m));
    let r = report::build(&s, &h);
    let detail = if r.problems.is_empty() { report::one_line(&r) } else { r.problems.join("; ") };
    let perf = perfdata(
        r.summary.max_lag_seconds,
        (m.warn_lag.as_secs_f64(), m.crit_lag.as_secs_f64()),
        r.primary.as_ref().map_or(0, |p| p.active_replicas),
        r.summary.total_standbys,
    );
    println!("PGREPL {} - {detail} | {perf}", h.level.nagios());
    match h.level {
        Level::Healthy => Ok(()),
        Level::Warning => Err(Error::Exit(1)),
        Level::Critical => Err(Error::Exit(2)),
    }
}

/// `check`'s perfdata. An unknown lag is `U` alone, the plugin guidelines'
/// form (`Us` is not valid).
fn perfdata(max_lag: Option<f64>, (warn, crit): (f64, f64), streaming: usize, total: usize) -> String {
    let lag = max_lag.map_or("U".into(), |l| format!("{l:.3}s"));
    format!("max_lag={lag};{warn};{crit} streaming={streaming};;;0;{total}")
}

/// Print the Nagios UNKNOWN line for an error and turn it into exit 3.
pub(crate) fn unknown(e: &Error) -> Error {
    println!("PGREPL UNKNOWN - {}", e.to_string().replace('\n', " "));
    Error::Exit(3)
}

/// `pgrepl monitor`.
pub(crate) async fn monitor(ctx: &Arc<Ctx>, as_json: bool, interval: Duration, count: Option<u64>) -> Result<()> {
    let g = Gatherer::observer(ctx.clone());
    let t = Thresholds::from(&ctx.cfg.monitor);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let s = g.gather().await?;
        let h = health::evaluate(&s, &t);
        let r = report::build(&s, &h);
        if as_json {
            println!("{}", json(&r, false)?);
        } else {
            println!("{} {:<8} {}", r.timestamp, h.level.nagios(), report::one_line(&r));
            for p in &r.problems {
                println!("    {p}");
            }
        }
        let _ = std::io::stdout().flush();
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfdata_follows_the_plugin_guidelines() {
        assert_eq!(perfdata(Some(1.5), (60.0, 300.0), 2, 2), "max_lag=1.500s;60;300 streaming=2;;;0;2");
        assert_eq!(perfdata(None, (60.0, 300.0), 0, 2), "max_lag=U;60;300 streaming=0;;;0;2");
    }
}
