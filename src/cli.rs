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
        /// Also make a CA and a server certificate (certs/) and turn [tls] on.
        #[arg(long)]
        tls: bool,
        /// A name or address the certificate must carry besides this machine's (repeatable).
        #[arg(long = "tls-host", requires = "tls")]
        tls_hosts: Vec<String>,
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
        /// Stop only the supervisor; PostgreSQL keeps running, unsupervised,
        /// until `pgrepl up` takes it over again (to upgrade pgrepl, change
        /// its own settings or add a node without downtime).
        #[arg(long, conflicts_with = "nodes")]
        leave_running: bool,
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
    /// Every switchover and failover: when, from and to which node, timeline and switch LSN.
    History {
        /// JSON array instead of a table.
        #[arg(long)]
        json: bool,
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
    /// Planned move of the primary to a streaming replica, with zero data loss.
    Switchover {
        /// Target node (default: the least lagging streaming replica).
        #[arg(long)]
        to: Option<String>,
        /// Refuse if the target's replay lag is larger than this.
        #[arg(long, default_value = "1MB", value_parser = parse_size)]
        max_lag: crate::units::ByteSize,
        /// Deadline for each step.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// The primary is down: promote the most advanced replica.
    Failover {
        /// Node to promote (default: the most advanced replica).
        #[arg(long)]
        to: Option<String>,
        /// Stop a still-running primary first (fencing).
        #[arg(long)]
        force: bool,
    },
    /// Make a former primary (or any diverged node) a standby again, with pg_rewind.
    Rejoin {
        /// Node name.
        node: String,
    },
    /// Apply a changed pgrepl.toml to the running nodes (files, roles, databases, slots) and reload them.
    Reload,
    /// Restart nodes one at a time, replicas first (for settings that need a restart).
    Restart {
        /// Node names (default: every running node of this host).
        nodes: Vec<String>,
    },
    /// Maintenance mode: no automatic failover, rejoin or re-clone until `resume`.
    Pause {
        /// Why, shown in status (for example "upgrading pg-1").
        #[arg(long)]
        reason: Option<String>,
    },
    /// End maintenance mode: automatic actions happen again.
    Resume,
    /// Replace a node's data dir with a fresh base backup from the primary.
    Reclone {
        /// Node name.
        node: String,
        /// Delete the old data dir instead of moving it aside.
        #[arg(long)]
        discard: bool,
    },
    /// Archive one WAL file (PostgreSQL's archive_command; fsync, then rename).
    WalPush {
        /// The archive directory.
        #[arg(long)]
        archive: PathBuf,
        /// %p: the file to archive.
        path: PathBuf,
        /// %f: its name.
        name: String,
    },
    /// Restore one WAL file from the archive (PostgreSQL's restore_command).
    WalFetch {
        /// The archive directory.
        #[arg(long)]
        archive: PathBuf,
        /// %f: the file wanted.
        name: String,
        /// %p: where to put it.
        path: PathBuf,
    },
    /// Manage the WAL archive.
    Archive {
        #[command(subcommand)]
        action: ArchiveAction,
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

/// `pgrepl archive ...`.
#[derive(Debug, Subcommand)]
pub enum ArchiveAction {
    /// Remove archived WAL that no node needs any more.
    Cleanup,
}

fn parse_size(s: &str) -> std::result::Result<crate::units::ByteSize, String> {
    crate::units::ByteSize::parse(s)
}

fn load(cli: &Cli) -> Result<std::sync::Arc<Ctx>> {
    let path = config::locate(cli.config.as_deref());
    let cfg = config::load(&path)?;
    Ctx::new(cfg)
}

/// Run the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    // PostgreSQL runs these as its own OS user, which may not read pgrepl.toml.
    match &cli.command {
        Command::WalPush { archive, path, name } => return crate::archive::push(archive, path, name),
        Command::WalFetch { archive, name, path } => {
            return match crate::archive::fetch(archive, name, path)? {
                true => Ok(()),
                // Not archived (yet): PostgreSQL expects a quiet non-zero exit.
                false => Err(Error::Exit(1)),
            };
        }
        _ => {}
    }
    if let Command::Init { nodes, port, name, dir, tls, tls_hosts } = &cli.command {
        let o = crate::init::InitOptions {
            nodes: *nodes,
            port: *port,
            name: name.clone(),
            tls: *tls,
            tls_hosts: tls_hosts.clone(),
        };
        return crate::init::run(dir, &o);
    }
    let ctx = match (&cli.command, load(&cli)) {
        // Monitoring systems read stdout: a check that cannot run is UNKNOWN.
        (Command::Check, Err(e)) => {
            eprintln!("pgrepl: error: {e}");
            return Err(crate::observe::unknown(&e));
        }
        (_, r) => r?,
    };
    // An unknown node name is a usage error (exit 64) in every command,
    // before anything is asked of the cluster.
    for name in named_nodes(&cli.command) {
        ctx.cfg.node(name)?;
    }
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
            Command::Down { nodes, leave_running: false } => crate::down::run(&ctx, &nodes).await,
            Command::Down { leave_running: true, .. } => crate::down::leave_running(&ctx).await,
            Command::Status { json, watch, interval } => crate::observe::status(&ctx, json, watch, interval).await,
            Command::Check => crate::observe::check(&ctx).await,
            Command::History { json } => crate::moves::history::show(&ctx, json),
            Command::Monitor { interval, json, count } => crate::observe::monitor(&ctx, json, interval, count).await,
            Command::Switchover { to, max_lag, timeout } => {
                let control = crate::control::Control::find(&ctx)?;
                let _lock = crate::control::wait_move_lock(&ctx, std::time::Duration::from_secs(15)).await?;
                let o = crate::moves::switchover::Options { to, max_lag, timeout };
                crate::moves::switchover::run(&ctx, &control, &o, &crate::supervise::Output::new(0)).await
            }
            Command::Failover { to, force } => {
                let control = crate::control::Control::find(&ctx)?;
                let _lock = crate::control::wait_move_lock(&ctx, std::time::Duration::from_secs(15)).await?;
                crate::moves::failover::run(&ctx, &control, to.as_deref(), force, &crate::supervise::Output::new(0))
                    .await
            }
            Command::Rejoin { node } => {
                let control = crate::control::Control::find(&ctx)?;
                let _lock = crate::control::wait_move_lock(&ctx, std::time::Duration::from_secs(15)).await?;
                crate::moves::rejoin::rejoin(&ctx, &control, &node, &crate::supervise::Output::new(0)).await
            }
            Command::Reclone { node, discard } => {
                let control = crate::control::Control::find(&ctx)?;
                let _lock = crate::control::wait_move_lock(&ctx, std::time::Duration::from_secs(15)).await?;
                crate::moves::rejoin::reclone(&ctx, &control, &node, discard, true, &crate::supervise::Output::new(0))
                    .await
            }
            Command::Reload => crate::reload::reload(&ctx, &crate::supervise::Output::new(0)).await,
            Command::Restart { nodes } => crate::reload::restart(&ctx, &nodes, &crate::supervise::Output::new(0)).await,
            Command::Pause { reason } => {
                crate::ha::pause::pause(&ctx, reason.as_deref(), &crate::supervise::Output::new(0)).await
            }
            Command::Resume => crate::ha::pause::resume(&ctx, &crate::supervise::Output::new(0)).await,
            Command::Archive { action: ArchiveAction::Cleanup } => {
                crate::archive::cleanup_cluster(&ctx, &crate::supervise::Output::new(0)).await
            }
            Command::WalPush { .. } | Command::WalFetch { .. } => Ok(()),
            Command::Psql { node, args } => crate::psql::run(&ctx, &node, &args),
        }
    })
}

/// Every node name a command was given.
fn named_nodes(c: &Command) -> Vec<&str> {
    match c {
        Command::Switchover { to, .. } | Command::Failover { to, .. } => to.iter().map(String::as_str).collect(),
        Command::Rejoin { node } | Command::Reclone { node, .. } | Command::Psql { node, .. } => vec![node],
        Command::Up { nodes, reclone, .. } => nodes.iter().chain(reclone).map(String::as_str).collect(),
        Command::Down { nodes, .. } | Command::Restart { nodes } => nodes.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}
