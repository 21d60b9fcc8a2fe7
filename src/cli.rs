//! Command-line interface: argument definitions and dispatch to the
//! library. Nothing here prints errors; `main` does, once.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::ctx::Ctx;
use crate::error::{Error, Result};

/// pgrepl: one config file to a supervised PostgreSQL streaming-replication cluster.
#[derive(Debug, Parser)]
#[command(name = "pgrepl", version, about)]
pub struct Cli {
    /// Config file (default: $PGREPL_CONFIG, then ./pgrepl.toml).
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented pgrepl.toml and a random replication password.
    Init {
        /// Number of nodes: 1 primary + N-1 replicas.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Port of the first node; the others follow.
        #[arg(long, default_value_t = crate::init::DEFAULT_PORT)]
        port: u16,
        /// Cluster name.
        #[arg(long, default_value = "demo")]
        name: String,
        /// Directory to write into.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Bring the cluster (or the named nodes) up and supervise it.
    Up {
        /// Only these nodes (default: every node whose host is on this machine).
        nodes: Vec<String>,
        /// Supervise in the background; log to <data_root>/pgrepl.log.
        #[arg(long)]
        detach: bool,
        /// Move this replica's data dir aside and clone it again.
        #[arg(long, value_name = "NODE")]
        reclone: Vec<String>,
        /// Internal: this process is the detached supervisor.
        #[arg(long, hide = true)]
        supervise_child: bool,
    },
    /// Stop the cluster (or the named nodes): replicas first, then the primary.
    Down {
        /// Only these nodes.
        nodes: Vec<String>,
    },
    /// Show every node: role, state, LSNs, replication, lag, slots and health.
    Status {
        /// Machine-readable JSON (stable; see docs/status.md).
        #[arg(long)]
        json: bool,
        /// Refresh in place until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Refresh interval for --watch.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: std::time::Duration,
    },
    /// One-line health check with Nagios exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Check,
    /// Watch the cluster: a summary line per interval (or one JSON report per line).
    Monitor {
        /// Time between reports.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: std::time::Duration,
        /// One JSON report per line (see docs/status.md).
        #[arg(long)]
        json: bool,
        /// Stop after this many reports.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Open psql on a node as the superuser, or run it with ARGS.
    Psql {
        /// Node name.
        node: String,
        /// Arguments for psql (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    crate::units::parse_duration(s)
}

fn load(cli: &Cli) -> Result<std::sync::Arc<Ctx>> {
    let path = config::locate(cli.config.as_deref());
    let cfg = config::load(&path)?;
    Ctx::new(cfg)
}

/// Run the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    if let Command::Init { nodes, port, name, dir } = &cli.command {
        return crate::init::run(dir, &crate::init::InitOptions { nodes: *nodes, port: *port, name: name.clone() });
    }
    let ctx = match (&cli.command, load(&cli)) {
        // Monitoring systems read stdout: a check that cannot run is UNKNOWN.
        (Command::Check, Err(e)) => {
            eprintln!("pgrepl: error: {e}");
            return Err(crate::observe::unknown(&e));
        }
        (_, r) => r?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        match cli.command {
            Command::Init { .. } => Ok(()),
            Command::Up { nodes, detach, reclone, supervise_child } => {
                crate::up::run(ctx, crate::up::UpOptions { nodes, detach, reclone, supervise_child }).await
            }
            Command::Down { nodes } => crate::down::run(&ctx, &nodes).await,
            Command::Status { json, watch, interval } => crate::observe::status(&ctx, json, watch, interval).await,
            Command::Check => crate::observe::check(&ctx).await,
            Command::Monitor { interval, json, count } => crate::observe::monitor(&ctx, json, interval, count).await,
            Command::Psql { node, args } => crate::psql::run(&ctx, &node, &args),
        }
    })
}
