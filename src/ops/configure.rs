//! Writing a node's rendered config into its data dir: postgresql.conf,
//! pg_hba.conf, pg_ident.conf and, for a standby, the standby settings
//! (standby.signal or recovery.conf). Rendering is in `pg::*`; this module
//! only assembles the plans and writes files atomically.

use std::path::Path;

use crate::config::{slot_name_for, Node, Role};
use crate::error::{Error, Result};
use crate::pg::conf::{self, ConfPlan};
use crate::pg::fsutil::write_atomic;
use crate::pg::hba::{self, HbaPlan};
use crate::pg::standby::{self, StandbyPlan};
use crate::store::ctx::Ctx;

/// A node's rendered config files, before anything is written.
pub(crate) struct NodeFiles {
    /// (file name in the data dir, text): postgresql.conf, pg_hba.conf,
    /// pg_ident.conf and, for a standby, standby.signal or recovery.conf.
    pub files: Vec<(&'static str, String)>,
    /// A primary's standby files, to be removed.
    pub remove: Vec<&'static str>,
    /// The `max_wal_senders` rendered (recorded when written: it never goes down).
    pub wal_senders: u32,
}

/// Write every config file for `node` in `dir`, for the given role.
pub(crate) fn write_node_files(ctx: &Ctx, node: &Node, dir: &Path, role: Role, primary: &Node) -> Result<()> {
    let r = render_node_files(ctx, node, role, primary)?;
    record_wal_senders(ctx, r.wal_senders)?;
    let write = |name: &str, text: &str| -> Result<()> {
        let p = dir.join(name);
        write_atomic(&p, text.as_bytes(), 0o600)?;
        ctx.runas.chown(&p)
    };
    for (name, text) in &r.files {
        write(name, text)?;
    }
    if let Some(t) = &ctx.cfg.tls {
        crate::pg::tls::write_server_files(t, dir, &ctx.runas)?;
    }
    // pg_basebackup copies the primary's postgresql.auto.conf; pgrepl keeps
    // standby settings out of it so a promotion leaves nothing stale behind.
    for name in &r.remove {
        let f = dir.join(name);
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&f, e)),
        }
    }
    Ok(())
}

/// Render `node`'s config files for `role`, changing nothing (what
/// `reload --dry-run` compares with the files on disk).
pub(crate) fn render_node_files(ctx: &Ctx, node: &Node, role: Role, primary: &Node) -> Result<NodeFiles> {
    let major = ctx.bin()?.major;
    let cfg = &ctx.cfg;
    let socket_dir = ctx.layout.socket_dir();
    let socket_dir = socket_dir.to_string_lossy();
    let passfile = ctx.layout.passfile();
    let passfile = passfile.to_string_lossy();
    let slot = slot_name_for(cfg, node);
    let trigger = node.data_dir.join("promote.trigger").to_string_lossy().into_owned();
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find pgrepl's own executable for archive_command: {e}")))?;
    let restore = cfg.archive.as_ref().map(|a| crate::ops::archive::restore_command(&exe, a));
    let archive_command = cfg.archive.as_ref().map(|a| crate::ops::archive::archive_command(&exe, a));
    let splan = StandbyPlan {
        primary_host: &primary.host,
        primary_port: primary.port,
        user: &cfg.replication.user,
        passfile: &passfile,
        application_name: &node.name,
        slot: slot.as_deref(),
        trigger_file: &trigger,
        restore_command: restore.as_deref(),
        ssl: cfg.tls.as_ref().map(|t| crate::pg::tls::libpq_params(t, &ctx.layout.root_cert())).unwrap_or_default(),
    };
    let in_conf = !standby::uses_recovery_conf(major);
    let standby_settings = in_conf.then(|| {
        let mut s = standby::settings(&splan);
        if role == Role::Primary {
            s.retain(|(k, _, _)| standby::kept_on_primary(major).contains(&k.as_str()));
        }
        s
    });
    let wal_senders = wal_senders(ctx);
    let plan = ConfPlan {
        major,
        cluster_name: &cfg.cluster_name,
        node_name: &node.name,
        listen_address: &node.host,
        port: node.port,
        socket_dir: &socket_dir,
        node_count: cfg.nodes.len(),
        max_wal_senders: Some(wal_senders),
        wal_keep_size: cfg.replication.wal_keep_size,
        standby: standby_settings,
        user: &cfg.postgresql,
        max_slot_wal_keep_size: cfg.replication.max_slot_wal_keep_size,
        archive_command,
        tls: cfg.tls.is_some(),
    };
    let admin = if ctx.runas.switch { vec!["root"] } else { vec![] };
    let hplan = HbaPlan {
        replication_user: &cfg.replication.user,
        node_hosts: cfg.nodes.iter().map(|n| n.host.as_str()).collect(),
        superuser: &ctx.runas.name,
        admin_os_users: admin,
        extra: &cfg.hba,
        tls: cfg.tls.is_some(),
    };
    let mut files = vec![
        ("postgresql.conf", conf::render(&plan)),
        ("pg_hba.conf", hba::render_hba(&hplan)),
        ("pg_ident.conf", hba::render_ident(&hplan)),
    ];
    let mut remove = Vec::new();
    match role {
        Role::Replica if standby::uses_recovery_conf(major) => {
            files.push((standby::RECOVERY_CONF, standby::recovery_conf(&splan)))
        }
        Role::Replica => files.push((standby::SIGNAL_FILE, String::new())),
        Role::Primary => remove.extend([standby::SIGNAL_FILE, standby::RECOVERY_CONF]),
    }
    Ok(NodeFiles { files, remove, wal_senders })
}

/// Why the record keeps `name` stopped, if it does: it needs a re-clone, or
/// it is a former primary fenced by a failover (its files still say primary).
pub(crate) fn held_back(st: &crate::store::state::State, name: &str) -> Option<String> {
    if st.needs_reclone.iter().any(|n| n == name) {
        return Some(format!(
            "needs a re-clone and stays stopped; run `pgrepl reclone {name}` (or `pgrepl up --reclone {name}`)"
        ));
    }
    if st.fenced.iter().any(|n| n == name) {
        return Some(format!(
            "was the primary before a failover and stays stopped until it is rewound: `pgrepl rejoin {name}` (automatic failover mode rejoins it by itself)"
        ));
    }
    None
}

/// The one gate every postmaster start passes: the supervisor calls it
/// before each spawn, so `up`, `up NODE`, a restart after a crash,
/// `restart`, `reload`, `rejoin`, `reclone` and every automatic action are
/// covered alike. A node's role comes from the cluster's record, never from
/// what its files happen to say: a node that is not the recorded primary
/// gets its standby files written first, so a deleted `standby.signal` can
/// never bring up a second writable primary. Nodes the record holds back
/// (fenced, needs-reclone) and dirs that are gone are refused with the way
/// out; an unreadable record refuses every start rather than guess.
///
/// The files are rendered from the config file as it is now (what `reload`
/// last applied), falling back on the supervisor's own copy if the file no
/// longer loads, so a crash restart never undoes a reload.
pub(crate) fn prepare_start(ctx: &Ctx, node: &Node) -> Result<Role> {
    let st = ctx.store().load().map_err(|e| Error::Refused(format!("{}: not starting it: {e}", node.name)))?;
    if let Some(why) = held_back(&st, &node.name) {
        return Err(Error::Refused(format!("{}: {why}", node.name)));
    }
    if !node.data_dir.join("PG_VERSION").exists() {
        let what = if node.data_dir.exists() { "holds no PostgreSQL data (no PG_VERSION)" } else { "is gone" };
        return Err(Error::Refused(format!(
            "{0}: its data dir {1} {what}; nothing to start. Run `pgrepl reclone {0}` for a fresh copy",
            node.name,
            node.data_dir.display()
        )));
    }
    let primary = match &st.primary {
        Some(p) => ctx.cfg.node(p).map_err(|_| {
            Error::Refused(format!(
                "{}: the recorded primary {p} is not in {}; not starting anything whose role cannot be known",
                node.name,
                ctx.cfg.path.display()
            ))
        })?,
        // Before the first initdb is recorded, the config's bootstrap primary.
        None => ctx.cfg.bootstrap_primary(),
    };
    let role = if primary.name == node.name { Role::Primary } else { Role::Replica };
    // Across hosts the record alone is not enough: a primary whose lease
    // passed to another node while it was down must not come back
    // writable before the new leader has recorded itself. Its agent takes
    // the lease before it starts; without the lease, no start.
    if role == Role::Primary && ctx.cfg.etcd.is_some() {
        let holder = ctx.lease_holder().map_err(|e| {
            Error::Refused(format!(
                "{}: not starting it as the primary: the leader lease cannot be read: {e}",
                node.name
            ))
        })?;
        if holder.as_deref() != Some(node.name.as_str()) {
            return Err(Error::Refused(format!(
                "{}: not starting it as the primary: {}",
                node.name,
                holder.map_or("its agent has not taken the leader lease yet".to_string(), |h| format!(
                    "{h} holds the leader lease"
                ))
            )));
        }
    }
    let fresh = crate::config::load(&ctx.cfg.path)
        .ok()
        .filter(|c| c.cluster_name == ctx.cfg.cluster_name && c.node(&node.name).is_ok())
        .and_then(|c| Ctx::with_config(ctx, c).ok());
    let ctx = fresh.as_deref().unwrap_or(ctx);
    let (node, primary) = (ctx.cfg.node(&node.name)?, ctx.cfg.node(&primary.name)?);
    write_node_files(ctx, node, &node.data_dir, role, primary)?;
    Ok(role)
}

/// `max_wal_senders` never goes down: a standby refuses to start ("recovery
/// aborted because of insufficient parameter settings") when its value is
/// below the one its primary's WAL recorded, so removing a node from the
/// config must not lower it. The highest value used is kept in the host's bookkeeping.
fn wal_senders(ctx: &Ctx) -> u32 {
    let cfg = &ctx.cfg;
    let wanted = cfg.replication.max_wal_senders.unwrap_or_else(|| conf::default_wal_senders(cfg.nodes.len()));
    let floor = ctx.bookkeeping().map(|b| b.max_wal_senders_used).unwrap_or(0);
    wanted.max(floor)
}

/// Keep the highest `max_wal_senders` written, in the host's bookkeeping.
fn record_wal_senders(ctx: &Ctx, used: u32) -> Result<()> {
    let floor = ctx.bookkeeping().map(|b| b.max_wal_senders_used).unwrap_or(0);
    // Rendering for a data root not made yet (validate, a dry run) records nothing.
    if used > floor && ctx.layout.root.exists() {
        ctx.update_bookkeeping(|b| b.max_wal_senders_used = used)?;
    }
    Ok(())
}

/// Write what libpq needs for replication and clones: the 0600 passfile
/// (the one place the clear-text password is written, readable only by
/// the OS user) and, with `[tls]` and a CA, the CA certificate.
pub(crate) fn write_client_files(ctx: &Ctx) -> Result<()> {
    if let Some(t) = &ctx.cfg.tls {
        crate::pg::tls::write_client_files(t, &ctx.layout.root_cert(), &ctx.runas)?;
    }
    let r = &ctx.cfg.replication;
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let mut text = format!("*:*:*:{}:{}\n", esc(&r.user), esc(r.password.expose()));
    if ctx.cfg.etcd.is_some() {
        // The rewind role shares the replication secret (see bootstrap).
        text.push_str(&format!("*:*:*:{}:{}\n", crate::pg::rewind::ROLE, esc(r.password.expose())));
    }
    let path = ctx.layout.passfile();
    write_atomic(&path, text.as_bytes(), 0o600)?;
    ctx.runas.chown(&path)?;
    // The database owners' passwords, for the connection URI `up` prints:
    // read by the user's psql, so owned by whoever runs pgrepl, not the OS user.
    let owners: String = ctx
        .cfg
        .databases
        .iter()
        .filter_map(|d| {
            Some(format!("*:*:{}:{}:{}\n", esc(&d.name), esc(&d.owner), esc(d.owner_password.as_ref()?.expose())))
        })
        .collect();
    if !owners.is_empty() {
        write_atomic(&ctx.layout.client_passfile(), owners.as_bytes(), 0o600)?;
    }
    Ok(())
}
