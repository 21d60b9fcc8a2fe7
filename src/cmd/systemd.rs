//! `pgrepl systemd`: a systemd unit that runs this config's agent, as
//! operators run Patroni or repmgrd. `Type=notify` (the agent says ready
//! once its nodes are up in their roles), a stop that signals pgrepl alone
//! so it stops the nodes in order (`KillMode=mixed`), `ExecReload` that
//! runs `pgrepl reload`, and hardening PostgreSQL tolerates. Rendering is
//! pure; the package's template unit (`pgrepl@.service`) comes from here
//! too, so the two never drift apart.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::ctx::Ctx;

/// What a unit is made of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unit {
    /// The pgrepl binary.
    pub pgrepl: PathBuf,
    /// The config file, absolute (`%i`-based in the template).
    pub config: String,
    pub user: String,
    pub description: String,
    /// Directories pgrepl writes to: the data root first (made at start if
    /// missing), then the archive and the parents of data dirs elsewhere.
    pub writes: Vec<String>,
    /// Whether `writes[0]` is made, owned by `user`, before the agent starts.
    pub make_root: bool,
    /// Time to stop every node, one after the other, with some margin.
    pub stop_timeout_secs: u64,
}

/// The unit's text.
pub(crate) fn render(u: &Unit) -> String {
    let pgrepl = u.pgrepl.display();
    let config = &u.config;
    let mut s = String::new();
    s.push_str(&format!(
        "# pgrepl {}: the agent for {}.\n\
         [Unit]\n\
         Description={}\n\
         Documentation=man:pgrepl(1) man:pgrepl-up(1)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         # Ready once this host's nodes are up in their roles (pgrepl sends READY=1).\n\
         Type=notify\n\
         NotifyAccess=main\n\
         User={}\n",
        env!("CARGO_PKG_VERSION"),
        config,
        u.description,
        u.user
    ));
    if u.make_root {
        if let Some(root) = u.writes.first() {
            // `+`: made with full privileges, before the sandbox below applies.
            s.push_str(&format!("ExecStartPre=+/usr/bin/install -d -m 0700 -o {} {root}\n", u.user));
        }
    }
    s.push_str(&format!(
        "ExecStart={pgrepl} -c {config} up\n\
         ExecReload={pgrepl} -c {config} reload\n\
         # A stop signals pgrepl alone; it stops the replicas, then the primary.\n\
         # What is left when TimeoutStopSec runs out is killed.\n\
         KillMode=mixed\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec={}\n\
         # A first start may clone large data dirs: no start deadline.\n\
         TimeoutStartSec=infinity\n\
         Restart=on-failure\n\
         RestartSec=5s\n\
         LimitNOFILE=65536\n\
         # Hardening that PostgreSQL tolerates (no MemoryDenyWriteExecute: JIT).\n\
         NoNewPrivileges=yes\n\
         PrivateTmp=yes\n\
         ProtectSystem=strict\n",
        u.stop_timeout_secs
    ));
    for w in &u.writes {
        s.push_str(&format!("ReadWritePaths={w}\n"));
    }
    s.push_str(
        "ProtectHome=read-only\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictSUIDSGID=yes\n\
         RestrictRealtime=yes\n\
         RestrictNamespaces=yes\n\
         LockPersonality=yes\n\
         SystemCallArchitectures=native\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
    );
    s
}

/// The package's template: `pgrepl@NAME.service` runs
/// `/etc/pgrepl/NAME/pgrepl.toml` (as `pgrepl init /etc/pgrepl/NAME` writes
/// it) as `postgres`, with its data root `/var/lib/pgrepl/NAME`.
pub(crate) fn template() -> String {
    render(&Unit {
        pgrepl: PathBuf::from("/usr/bin/pgrepl"),
        config: "/etc/pgrepl/%i/pgrepl.toml".into(),
        user: "postgres".into(),
        description: "pgrepl agent for %i (PostgreSQL streaming replication)".into(),
        writes: vec!["/var/lib/pgrepl/%i".into()],
        make_root: true,
        stop_timeout_secs: 300,
    })
}

/// The unit for this config, run as `user`.
pub(crate) fn unit_for(ctx: &Ctx, user: &str) -> Result<Unit> {
    let cfg = &ctx.cfg;
    let config = std::fs::canonicalize(&cfg.path).map_err(|e| Error::io(&cfg.path, e))?;
    let pgrepl = std::env::current_exe().map_err(|e| Error::Other(format!("where is this pgrepl binary? {e}")))?;
    let root = cfg.data_root.clone();
    let mut writes: Vec<PathBuf> = vec![root.clone()];
    writes.extend(cfg.archive.clone());
    // A data dir outside the root is made by pgrepl: its parent must be writable.
    for n in &cfg.nodes {
        if !n.data_dir.starts_with(&root) {
            if let Some(parent) = n.data_dir.parent() {
                writes.push(parent.to_path_buf());
            }
        }
    }
    writes.dedup();
    let nodes = cfg.nodes.len() as u64;
    Ok(Unit {
        pgrepl,
        config: quote(&config)?,
        user: user.to_string(),
        description: format!("pgrepl agent for cluster {} (PostgreSQL streaming replication)", cfg.cluster_name),
        writes: writes.iter().map(|p| quote(p)).collect::<Result<_>>()?,
        make_root: true,
        stop_timeout_secs: cfg.supervisor.stop_timeout.as_secs() * nodes + 30,
    })
}

/// A path as a unit file takes it: systemd splits on spaces and expands `%`.
fn quote(p: &Path) -> Result<String> {
    let s =
        p.to_str().ok_or_else(|| Error::Usage(format!("{} is not UTF-8: a unit file cannot name it", p.display())))?;
    if s.contains([' ', '%', '"', '\'', '\\', '\n']) {
        return Err(Error::Usage(format!(
            "{s} holds a space, quote, backslash or %: write the unit by hand, or move it to a plain path"
        )));
    }
    Ok(s.to_string())
}

/// `pgrepl systemd`: print the unit.
pub(crate) fn run(ctx: &Ctx, user: &str, template_unit: bool) -> Result<()> {
    let text = if template_unit { template() } else { render(&unit_for(ctx, user)?) };
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_up_notifies_stops_in_order_and_reloads() {
        let u = Unit {
            pgrepl: "/usr/bin/pgrepl".into(),
            config: "/etc/pgrepl/demo.toml".into(),
            user: "postgres".into(),
            description: "d".into(),
            writes: vec!["/srv/pg".into(), "/srv/archive".into()],
            make_root: true,
            stop_timeout_secs: 210,
        };
        let t = render(&u);
        for line in [
            "Type=notify",
            "User=postgres",
            "ExecStartPre=+/usr/bin/install -d -m 0700 -o postgres /srv/pg",
            "ExecStart=/usr/bin/pgrepl -c /etc/pgrepl/demo.toml up",
            "ExecReload=/usr/bin/pgrepl -c /etc/pgrepl/demo.toml reload",
            "KillMode=mixed",
            "TimeoutStopSec=210",
            "Restart=on-failure",
            "ProtectSystem=strict",
            "ReadWritePaths=/srv/pg",
            "ReadWritePaths=/srv/archive",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line}:\n{t}");
        }
        assert!(!t.contains("MemoryDenyWriteExecute="), "PostgreSQL's JIT writes executable memory");
    }

    #[test]
    fn the_template_takes_its_config_from_the_instance_name() {
        let t = template();
        assert!(t.contains("ExecStart=/usr/bin/pgrepl -c /etc/pgrepl/%i/pgrepl.toml up"), "{t}");
        assert!(t.contains("ReadWritePaths=/var/lib/pgrepl/%i"), "{t}");
    }

    #[test]
    fn paths_a_unit_cannot_name_plainly_are_refused() {
        assert!(quote(Path::new("/srv/my data")).is_err());
        assert!(quote(Path::new("/srv/100%")).is_err());
        assert_eq!(quote(Path::new("/srv/pg")).unwrap(), "/srv/pg");
    }
}
