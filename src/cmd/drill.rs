//! `pgrepl drill`: asks first (it injects real faults), runs the drill,
//! and prints its report: a table, or JSON with `--json`, and an HTML
//! page with `--report`. Exit 1 when the drill failed (a round did not
//! recover, a write was lost, two primaries were seen, or something was
//! left behind).

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ops::drill::{self, Options};
use crate::output::Output;
use crate::store::ctx::Ctx;

pub(crate) async fn run(ctx: &Arc<Ctx>, o: &Options, json: bool, html: Option<&Path>, yes: bool) -> Result<()> {
    drill::check(o, ctx.cfg.etcd.is_some())?;
    // A report that cannot be written is known before any fault.
    if let Some(dir) = html.and_then(Path::parent).filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        return Err(Error::Usage(format!("--report: directory {} does not exist", dir.display())));
    }
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
    if let Some(path) = html {
        crate::pg::fsutil::write_atomic(path, drill::html::render(&report).as_bytes(), 0o644)?;
        out.info(format!("drill: report written to {}", path.display()));
    }
    if report.ok {
        Ok(())
    } else {
        Err(Error::Exit(1))
    }
}
