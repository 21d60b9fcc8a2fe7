//! `pgrepl drill`: asks first (it injects real faults), runs the drill,
//! and prints its report: a table, or JSON with `--json`. Exit 1 when the
//! drill failed (a round did not recover, a write was lost, two primaries
//! were seen, or something was left behind).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ops::drill::{self, Options};
use crate::output::Output;
use crate::store::ctx::Ctx;

pub(crate) async fn run(ctx: &Arc<Ctx>, o: &Options, json: bool, yes: bool) -> Result<()> {
    drill::check(o, ctx.cfg.etcd.is_some())?;
    let q = format!(
        "Run {} round(s) of `{}` on cluster {}? The drill injects real faults into the primary.",
        o.rounds,
        o.fault.name(),
        ctx.cfg.cluster_name
    );
    crate::cmd::confirm::ask(&q, "drill", yes)?;
    let out = if json { Output::to_stderr() } else { Output::new(0) };
    let report = drill::run(ctx, o, &out).await?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", drill::report::render(&report));
    }
    if report.ok {
        Ok(())
    } else {
        Err(Error::Exit(1))
    }
}
