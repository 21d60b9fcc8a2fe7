//! `pgrepl validate`: the config and every check `up` makes before it
//! changes anything (binaries, the OS user's reach, data dirs, ports), all
//! reported at once with their place in the config, like `nginx -t`. It
//! changes nothing, and works on a stopped or a running cluster.

use crate::error::{Error, Result};
use crate::store::ctx::Ctx;

/// Run it: exit 0 with a summary, or 2 with every problem.
pub(crate) async fn run(ctx: &Ctx) -> Result<()> {
    let problems = crate::ops::preflight::problems(ctx).await;
    if !problems.is_empty() {
        return Err(Error::Config { problems });
    }
    for w in &ctx.cfg.warnings {
        println!("warning: {w}");
    }
    let state = if crate::store::lock::holder(&ctx.layout).is_some() { "running" } else { "not running" };
    println!(
        "{}: OK (cluster {}, {} nodes, PostgreSQL {}; the cluster is {state})",
        ctx.cfg.path.display(),
        ctx.cfg.cluster_name,
        ctx.cfg.nodes.len(),
        ctx.bin()?.version
    );
    Ok(())
}
