//! `pgrepl psql NODE [-- ARGS]`: psql on a node as the superuser, through
//! its Unix socket (peer auth), replacing this process.

use std::os::unix::process::CommandExt;

use crate::error::{Error, Result};
use crate::store::ctx::Ctx;

/// Exec psql; returns only on failure.
pub(crate) fn run(ctx: &Ctx, node: &str, args: &[String]) -> Result<()> {
    let node = ctx.cfg.node(node)?;
    let psql = ctx.bin().map(|b| b.program("psql")).unwrap_or_default();
    let psql = if psql.is_file() { psql } else { "psql".into() };
    let err = std::process::Command::new(&psql)
        .arg("-h")
        .arg(ctx.layout.socket_dir())
        .arg("-p")
        .arg(node.port.to_string())
        .arg("-U")
        .arg(&ctx.runas.name)
        .arg("-d")
        .arg("postgres")
        .args(args)
        .exec();
    Err(Error::Other(format!("cannot run {}: {err}", psql.display())))
}
