//! Command-line interface: argument definitions and dispatch to the
//! library. Nothing here prints errors; `main` does, once.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::error::{Error, Result};
use crate::store::ctx::Ctx;

/// pgrepl: one config file to a supervised PostgreSQL streaming-replication cluster.
/// `pgrepl --version`: the crate version, the commit it was built from and the build's date.
pub(crate) const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PGREPL_COMMIT"), ", built ", env!("PGREPL_BUILD_DATE"), ")");

#[derive(Debug, Parser)]
#[command(name = "pgrepl", version = VERSION, about)]
pub struct Cli {
    /// Config file (default: $PGREPL_CONFIG, then ./pgrepl.toml).
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// How pgrepl writes its lines: `text` (a timestamp and a level on each) or
    /// `json` (one object per line). Default: [log] format, else text.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
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
        #[arg(long, default_value_t = crate::cmd::init::DEFAULT_PORT)]
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
        /// Health-API port of the first node; the others follow (default: port + 10000,
        /// or another range below 32768 when that does not fit).
        #[arg(long)]
        api_port: Option<u16>,
        /// Where the nodes' data dirs go (default: `data`, beside the config; the
        /// package's unit expects /var/lib/pgrepl/NAME).
        #[arg(long)]
        data_root: Option<String>,
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
        /// Show only pgrepl's own lines; postgres's go to <data_root>/log/<node>.log.
        #[arg(long)]
        quiet_postgres: bool,
    },
    /// Stop this host's nodes (or the named ones): replicas first, then the primary.
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
        /// Every column: pid, port and each LSN (the default fits 100 columns).
        #[arg(long)]
        wide: bool,
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
    /// Check the config and everything `up` checks before it changes anything; change nothing.
    Validate,
    /// Planned move of the primary to a streaming replica, with zero data loss.
    Switchover {
        /// Target node (default: the least lagging streaming replica).
        #[arg(long)]
        to: Option<String>,
        /// Refuse if the target's replay lag is larger than this.
        #[arg(long, default_value = crate::ops::moves::switchover::DEFAULT_MAX_LAG, value_parser = parse_size)]
        max_lag: crate::domain::units::ByteSize,
        /// Deadline for each step.
        #[arg(long, default_value = crate::ops::moves::switchover::DEFAULT_TIMEOUT, value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Do not ask for confirmation (needed without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// The primary is down: promote the most advanced replica.
    Failover {
        /// Node to promote (default: the most advanced replica).
        #[arg(long)]
        to: Option<String>,
        /// Stop a primary that still runs first (fencing); without it, failover refuses.
        #[arg(long)]
        stop_primary: bool,
        /// In the sync modes, promote a standby that was not synchronous (may lose
        /// acknowledged commits).
        #[arg(long)]
        allow_data_loss: bool,
        /// Do not ask for confirmation (needed without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Gone: see --stop-primary and --yes.
        #[arg(long, hide = true)]
        force: bool,
    },
    /// Make a former primary (or any diverged node) a standby again, with pg_rewind.
    Rejoin {
        /// Node name.
        node: String,
    },
    /// Apply a changed pgrepl.toml to the running nodes (files, roles, databases, slots) and reload them; across hosts each agent reloads its own.
    Reload {
        /// Print what would change (each setting old -> new, reload or restart; roles,
        /// databases, slots) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restart nodes one at a time, replicas first (for settings that need a restart). Across hosts, a node elsewhere is restarted by its own agent.
    Restart {
        /// Node names (default: every running node of this host).
        nodes: Vec<String>,
    },
    /// A failover drill on the running cluster: inject a fault into the primary, under a
    /// writer, and measure RTO, write gap and lost writes (on one machine or across hosts).
    Drill {
        /// switchover, kill-postgres or freeze-postgres; across hosts also kill-agent,
        /// isolate-primary and freeze-host.
        #[arg(long, default_value = "switchover", value_parser = crate::ops::drill::Fault::parse)]
        fault: crate::ops::drill::Fault,
        /// Rounds, each a fault and a recovery (1 to 20).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Writes per second of the drill's writer (1/s to 1000/s).
        #[arg(long, default_value = "50/s", value_parser = crate::ops::drill::parse_rate)]
        rate: u32,
        /// After the drill, check every node has every acknowledged write.
        #[arg(long)]
        durability_check: bool,
        /// How long freeze-postgres and freeze-host keep the primary stopped, and
        /// isolate-primary cut off.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        freeze_for: std::time::Duration,
        /// How long a round may take to recover before it counts as failed.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        round_timeout: std::time::Duration,
        /// The report as JSON on stdout (progress goes to stderr).
        #[arg(long)]
        json: bool,
        /// Also write the report as a self-contained HTML page with a timeline per round.
        #[arg(long, value_name = "FILE")]
        report: Option<std::path::PathBuf>,
        /// Do not ask for confirmation (needed without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
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
        /// Do not ask for confirmation of --discard (needed without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
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
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages: pgrepl.1 and one per subcommand (pgrepl-switchover.1, ...).
    Man {
        /// Directory to write them into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print a systemd unit that runs this config's agent (Type=notify; install it in /etc/systemd/system).
    Systemd {
        /// The OS user the agent runs as (PostgreSQL runs as it too).
        #[arg(long, default_value = "postgres")]
        user: String,
        /// Print the package's template unit, pgrepl@.service, instead (config /etc/pgrepl/NAME/pgrepl.toml).
        #[arg(long)]
        template: bool,
    },
    /// Open psql on a node of this host as the superuser (through its socket), or run it with ARGS.
    Psql {
        /// Node name.
        node: String,
        /// Arguments for psql, as you would type them (`-c "select 1"`); `--` works too.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    crate::domain::units::parse_duration(s)
}

/// `pgrepl archive ...`.
#[derive(Debug, Subcommand)]
pub enum ArchiveAction {
    /// Remove archived WAL that no node needs any more (one machine only: it reads stopped standbys' control files).
    Cleanup,
}

fn parse_size(s: &str) -> std::result::Result<crate::domain::units::ByteSize, String> {
    crate::domain::units::ByteSize::parse(s)
}

fn load(cli: &Cli) -> Result<std::sync::Arc<Ctx>> {
    let path = config::locate(cli.config.as_deref());
    // Observing needs no secret but its own: a monitoring user may not read
    // the replication password.
    let observing = matches!(cli.command, Command::Status { .. } | Command::Check | Command::Monitor { .. });
    let cfg = if observing { config::load_observing(&path)? } else { config::load(&path)? };
    Ctx::new(cfg)
}

/// Run the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    // PostgreSQL runs these as its own OS user, which may not read pgrepl.toml.
    match &cli.command {
        Command::WalPush { archive, path, name } => return crate::ops::archive::push(archive, path, name),
        Command::WalFetch { archive, name, path } => {
            return match crate::ops::archive::fetch(archive, name, path)? {
                true => Ok(()),
                // Not archived (yet): PostgreSQL expects a quiet non-zero exit.
                false => Err(Error::Exit(1)),
            };
        }
        _ => {}
    }
    // What needs no config.
    match &cli.command {
        Command::Completions { shell } => {
            return crate::cmd::generate::completions(<Cli as clap::CommandFactory>::command(), *shell)
        }
        Command::Man { dir } => return crate::cmd::generate::man(<Cli as clap::CommandFactory>::command(), dir),
        Command::Systemd { template: true, .. } => {
            print!("{}", crate::cmd::systemd::template());
            return Ok(());
        }
        _ => {}
    }
    if let Command::Init { nodes, port, name, dir, tls, tls_hosts, api_port, data_root } = &cli.command {
        let o = crate::cmd::init::InitOptions {
            nodes: *nodes,
            port: *port,
            name: name.clone(),
            tls: *tls,
            tls_hosts: tls_hosts.clone(),
            api_port: *api_port,
            data_root: data_root.clone(),
        };
        return crate::cmd::init::run(dir, &o);
    }
    let ctx = match (&cli.command, load(&cli)) {
        // Monitoring systems read stdout: a check that cannot run is UNKNOWN.
        (Command::Check, Err(e)) => {
            eprintln!("pgrepl: error: {e}");
            return Err(crate::cmd::observe::unknown(&e));
        }
        (_, r) => r?,
    };
    let json = cli.log_format.as_deref().map_or(ctx.cfg.log_json, |f| f == "json");
    let quiet = matches!(cli.command, Command::Up { quiet_postgres: true, .. }).then(|| ctx.layout.root.join("log"));
    crate::output::configure(crate::output::LogSettings { json, quiet_postgres: quiet });
    // An unknown node name is a usage error (exit 64) in every command,
    // before anything is asked of the cluster.
    for name in named_nodes(&cli.command) {
        ctx.cfg.node(name)?;
    }
    // Across hosts, the agent's fence is forked while this process has one
    // thread: an `up` that runs the agent (in the foreground, or as the
    // detached child) gets one; an `up` that only attaches lets it go.
    let fence = match (&cli.command, &ctx.cfg.etcd) {
        (Command::Up { detach, supervise_child, .. }, Some(_)) if !*detach || *supervise_child => {
            Some(std::sync::Arc::new(crate::agent::fence::Fence::spawn()?))
        }
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
    let log_format = cli.log_format.clone();
    rt.block_on(async move {
        match cli.command {
            Command::Init { .. } => Ok(()),
            Command::Up { nodes, detach, reclone, supervise_child, quiet_postgres } => {
                let o = crate::cmd::up::UpOptions {
                    nodes,
                    detach,
                    reclone,
                    supervise_child,
                    quiet_postgres,
                    log_format,
                    fence,
                };
                crate::cmd::up::run(ctx, o).await
            }
            Command::Down { nodes, leave_running: false } => crate::cmd::down::run(&ctx, &nodes).await,
            Command::Down { leave_running: true, .. } => crate::cmd::down::leave_running(&ctx).await,
            Command::Status { json, wide, watch, interval } => {
                crate::cmd::observe::status(&ctx, json, wide, watch, interval).await
            }
            Command::Check => crate::cmd::observe::check(&ctx).await,
            Command::Validate => crate::cmd::validate::run(&ctx).await,
            Command::History { json } => crate::ops::moves::history::show(&ctx, json),
            Command::Monitor { interval, json, count } => crate::cmd::observe::monitor(&ctx, json, interval, count).await,
            Command::Switchover { to, max_lag, timeout, yes } => {
                let target = to.as_deref().map_or("a streaming replica".to_string(), str::to_string);
                crate::cmd::confirm::ask(&format!("Switch the primary over to {target}?"), "switchover", yes)?;
                let o = crate::ops::moves::switchover::Options { to, max_lag, timeout };
                crate::ops::entry::switchover(&ctx, &o, &crate::output::Output::new(0)).await
            }
            Command::Failover { force: true, .. } => Err(Error::Usage(
                "`failover --force` is gone, because it meant more than it said: `--stop-primary` stops a primary that still runs, `--yes` skips the confirmation (what patronictl's --force does)".into(),
            )),
            Command::Failover { to, stop_primary, allow_data_loss, yes, force: false } => {
                let stop = if stop_primary { ", stopping the primary if it runs" } else { "" };
                crate::cmd::confirm::ask(&format!("Fail over{stop}?"), "failover", yes)?;
                let o = crate::ops::moves::failover::Options { to, stop_primary, allow_data_loss };
                crate::ops::entry::failover(&ctx, &o, &crate::output::Output::new(0)).await
            }
            Command::Rejoin { node } => crate::ops::entry::rejoin(&ctx, &node, &crate::output::Output::new(0)).await,
            Command::Reclone { node, discard, yes } => {
                if discard {
                    let q = format!("Delete {node}'s data dir for good and clone it again?");
                    crate::cmd::confirm::ask(&q, "reclone --discard", yes)?;
                }
                crate::ops::entry::reclone(&ctx, &node, discard, &crate::output::Output::new(0)).await
            }
            Command::Reload { dry_run } => crate::ops::entry::reload(&ctx, dry_run, &crate::output::Output::new(0)).await,
            Command::Restart { nodes } => crate::ops::entry::restart(&ctx, &nodes, &crate::output::Output::new(0)).await,
            Command::Drill { fault, rounds, rate, durability_check, freeze_for, round_timeout, json, report, yes } => {
                let o = crate::ops::drill::Options { fault, rounds, rate, durability_check, freeze_for, round_timeout };
                crate::cmd::drill::run(&ctx, &o, json, report.as_deref(), yes).await
            }
            Command::Pause { reason } => {
                crate::agent::ha::pause::pause(&ctx, reason.as_deref(), &crate::output::Output::new(0)).await
            }
            Command::Resume => crate::agent::ha::pause::resume(&ctx, &crate::output::Output::new(0)).await,
            Command::Archive { action: ArchiveAction::Cleanup } => {
                crate::ops::archive::cleanup_cluster(&ctx, &crate::output::Output::new(0)).await
            }
            Command::Systemd { user, template } => crate::cmd::systemd::run(&ctx, &user, template),
            Command::WalPush { .. } | Command::WalFetch { .. } | Command::Completions { .. } | Command::Man { .. } => {
                Ok(())
            }
            Command::Psql { node, args } => crate::cmd::psql::run(&ctx, &node, &args),
        }
    })
}

/// `pgrepl psql NODE -c "select 1"` passes `-c` to psql, as people type it,
/// not to pgrepl's own `-c/--config`: a `--` is put after the node name
/// unless one is there already. Everything else is left as it is.
pub fn psql_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let takes_value = |a: &std::ffi::OsStr| a == "-c" || a == "--config" || a == "--log-format";
    let mut i = 1;
    let mut seen_psql = false;
    while i < args.len() {
        let a = args[i].as_os_str();
        if takes_value(a) {
            i += 2;
            continue;
        }
        if a.to_string_lossy().starts_with('-') {
            i += 1;
            continue;
        }
        if !seen_psql {
            if a != "psql" {
                return args; // another command
            }
            seen_psql = true;
            i += 1;
            continue;
        }
        // The node name: what follows is psql's.
        if args.get(i + 1).is_some_and(|n| n != "--") {
            args.insert(i + 1, "--".into());
        }
        return args;
    }
    args
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<std::ffi::OsString> {
        s.iter().map(|x| x.into()).collect()
    }

    #[test]
    fn psql_options_after_the_node_go_to_psql() {
        assert_eq!(
            psql_args(v(&["pgrepl", "psql", "pg-2", "-c", "select 1"])),
            v(&["pgrepl", "psql", "pg-2", "--", "-c", "select 1"])
        );
        assert_eq!(
            psql_args(v(&["pgrepl", "-c", "x.toml", "psql", "pg-2", "-tAc", "select 1"])),
            v(&["pgrepl", "-c", "x.toml", "psql", "pg-2", "--", "-tAc", "select 1"])
        );
        // `--` already there, no psql arguments, or another command: unchanged.
        for a in [
            &["pgrepl", "psql", "pg-2", "--", "-c", "x"][..],
            &["pgrepl", "psql", "pg-2"],
            &["pgrepl", "-c", "psql", "status"],
            &["pgrepl", "status", "--json"],
        ] {
            assert_eq!(psql_args(v(a)), v(a));
        }
        let cli = Cli::try_parse_from(psql_args(v(&["pgrepl", "psql", "pg-2", "-c", "select 1"]))).unwrap();
        assert!(cli.config.is_none());
        match cli.command {
            Command::Psql { node, args } => {
                assert_eq!((node.as_str(), args), ("pg-2", vec!["-c".to_string(), "select 1".into()]))
            }
            other => panic!("{other:?}"),
        }
    }
}
