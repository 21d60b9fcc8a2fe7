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
    /// Show every node: role, state, LSNs, replication and lag.
    Status {
        /// Machine-readable JSON (stable; see README).
        #[arg(long)]
        json: bool,
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
    let ctx = load(&cli)?;
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
            Command::Status { json } => {
                let s = crate::status::gather(&ctx).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&s).map_err(|e| Error::Other(e.to_string()))?);
                } else {
                    print!("{}", crate::status::render_table(&s));
                }
                Ok(())
            }
            Command::Psql { node, args } => crate::psql::run(&ctx, &node, &args),
        }
    })
}
