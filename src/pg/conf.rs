//! Rendering `postgresql.conf`. Pure: a [`ConfPlan`] in, file text out.
//!
//! pgrepl owns `postgresql.conf`; initdb's original is kept as
//! `postgresql.base.conf` and included first, so everything below it wins.
//! Settings are sorted, each carries the reason it is set, and the user's
//! `[postgresql]` table wins over pgrepl's defaults.

use std::collections::BTreeMap;

pub(crate) use crate::domain::guc::quote;
use crate::domain::units::ByteSize;

/// The file initdb wrote, kept and included first.
pub(crate) const BASE_FILE: &str = "postgresql.base.conf";

/// The header on every file pgrepl owns.
pub(crate) const HEADER: &str = "# Managed by pgrepl: this file is rewritten on every `pgrepl up`; do not edit.\n# Put your own settings in pgrepl.toml [postgresql].\n";

/// Everything `postgresql.conf` depends on.
#[derive(Debug, Clone)]
pub(crate) struct ConfPlan<'a> {
    pub major: u32,
    pub cluster_name: &'a str,
    pub node_name: &'a str,
    pub listen_address: &'a str,
    pub port: u16,
    pub socket_dir: &'a str,
    /// Number of nodes in the cluster (any of them may stream from this one).
    pub node_count: usize,
    pub max_wal_senders: Option<u32>,
    pub wal_keep_size: ByteSize,
    /// Standby settings for PostgreSQL 12+, where they live in postgresql.conf.
    pub standby: Option<StandbySettings>,
    /// `[postgresql]`, already as GUC literals.
    pub user: &'a BTreeMap<String, String>,
    /// Bound on the WAL a slot may retain.
    pub max_slot_wal_keep_size: ByteSize,
    /// `archive_command`, when a WAL archive is configured.
    pub archive_command: Option<String>,
    /// `[tls]`: serve TLS with the certificate in the data dir.
    pub tls: bool,
}

/// Rendered standby GUCs (see `standby`).
pub(crate) type StandbySettings = Vec<(String, String, &'static str)>;

/// The `max_wal_senders` rule from the guides, 3 + 2 × replicas, and never
/// below PostgreSQL's own default of 10 (a standby seeded from a fresh
/// initdb may not run with fewer than the initdb recorded).
pub(crate) fn default_wal_senders(node_count: usize) -> u32 {
    (3 + 2 * node_count.saturating_sub(1) as u32).max(10)
}

/// Render the whole `postgresql.conf`.
/// `wal_sender_timeout` and `wal_receiver_timeout` from PostgreSQL 12 on.
pub(crate) const REPLICATION_TIMEOUT: &str = "5s";

/// The libpq `options` of a base backup's connections (PostgreSQL 12 and
/// later): PostgreSQL's own timeout, not [`REPLICATION_TIMEOUT`], since the
/// copy may wait on a slow disk longer than a streaming standby ever does.
pub(crate) const BASE_BACKUP_OPTIONS: &str = "-c wal_sender_timeout=60s";

pub(crate) fn render(p: &ConfPlan) -> String {
    let senders = p.max_wal_senders.unwrap_or_else(|| default_wal_senders(p.node_count));
    // (name, value, why)
    let mut s: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut set = |k: &str, v: String, why: &str| {
        s.insert(k.to_string(), (v, why.to_string()));
    };
    set("listen_addresses", quote(p.listen_address), "only the address this node is reached at, not every interface");
    set("port", p.port.to_string(), "this node's port from pgrepl.toml");
    set(
        "unix_socket_directories",
        quote(p.socket_dir),
        "pgrepl connects here as the superuser (peer auth); no shared /var/run needed",
    );
    set(
        "cluster_name",
        quote(&format!("{}/{}", p.cluster_name, p.node_name)),
        "names the processes in `ps`, so nodes on one machine can be told apart",
    );
    set("wal_level", "replica".into(), "standbys need replica-level WAL to stream and replay");
    set("hot_standby", "on".into(), "standbys serve read-only queries");
    set("wal_log_hints", "on".into(), "lets pg_rewind resync a former primary instead of a full re-clone");
    set(
        "max_wal_senders",
        senders.to_string(),
        "3 + 2 x replicas (at least 10): one per standby plus room for reconnects and base backups",
    );
    set("max_replication_slots", senders.to_string(), "one slot per replica, with the same headroom as wal senders");
    set("password_encryption", quote("scram-sha-256"), "new passwords are stored as SCRAM verifiers, never md5");
    set("log_line_prefix", quote("%m [%p] "), "timestamp and pid on every line; pgrepl adds the node name in front");
    if p.major >= 13 {
        set(
            "wal_keep_size",
            quote(&p.wal_keep_size.to_string()),
            "WAL kept for standbys that briefly disconnect (pgrepl.toml [replication] wal_keep_size)",
        );
    } else {
        let segs = p.wal_keep_size.0.div_ceil(16 << 20).max(1);
        set(
            "wal_keep_segments",
            segs.to_string(),
            "WAL kept for standbys that briefly disconnect (wal_keep_size / 16MB)",
        );
    }
    if p.major >= 13 {
        set("max_slot_wal_keep_size", quote(&p.max_slot_wal_keep_size.to_string()), "a slot of a long-gone standby cannot fill the disk; past this the slot is lost and the standby needs a re-clone");
    }
    if p.major >= 12 {
        // PostgreSQL's 60 s means a standby cut off without a word (a lost
        // link, a dead host: nothing answers, nothing refuses) still counts
        // as streaming for a minute, and in `sync` commits wait that long
        // before the set can degrade. 5 s, as CloudNativePG ships; a
        // walsender asks for a reply at half of it, so a live standby always
        // answers in time. Base backups ask for 60 s on their own connection
        // (REPLICATION_OPTIONS): a copy to a slow disk must not be cut off.
        // Before 12 the setting cannot be set per connection, so it stays.
        set("wal_sender_timeout", quote(REPLICATION_TIMEOUT), "a standby that stopped answering (lost link, dead host) is dropped after 5 s, not 60 (base backups ask for 60 s)");
        set(
            "wal_receiver_timeout",
            quote(REPLICATION_TIMEOUT),
            "a standby whose primary went silent reconnects after 5 s, not 60",
        );
    }
    if let Some(cmd) = &p.archive_command {
        set(
            "archive_mode",
            "on".into(),
            "every finished WAL segment goes to the archive, so a standby that fell behind can catch up",
        );
        set(
            "archive_command",
            quote(cmd),
            "pgrepl's wal-push: fsync, then rename, so a crash never leaves a partial segment",
        );
    }
    if p.tls {
        for (k, v, why) in crate::pg::tls::server_settings() {
            set(k, v, why);
        }
    }
    if let Some(standby) = &p.standby {
        for (k, v, why) in standby {
            set(k, v.clone(), why);
        }
    }
    for (k, v) in p.user {
        set(k, v.clone(), "set in pgrepl.toml [postgresql]");
    }
    let mut out = String::from(HEADER);
    out.push_str(&format!(
        "\ninclude_if_exists {}    # initdb's original settings; everything below overrides them\n\n",
        quote(BASE_FILE)
    ));
    for (k, (v, why)) in &s {
        out.push_str(&format!("{k} = {v}    # {why}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_senders_rule() {
        assert_eq!(default_wal_senders(1), 10);
        assert_eq!(default_wal_senders(3), 10);
        assert_eq!(default_wal_senders(5), 11);
    }

    fn plan<'a>(user: &'a BTreeMap<String, String>, major: u32) -> ConfPlan<'a> {
        ConfPlan {
            major,
            cluster_name: "demo",
            node_name: "pg-1",
            listen_address: "127.0.0.1",
            port: 15432,
            socket_dir: "/srv/data/sockets",
            node_count: 3,
            max_wal_senders: None,
            wal_keep_size: ByteSize(160 << 20),
            standby: None,
            user,
            max_slot_wal_keep_size: ByteSize(8 << 30),
            archive_command: None,
            tls: false,
        }
    }

    #[test]
    fn primary_conf_snapshot() {
        let user = BTreeMap::from([("shared_buffers".to_string(), "'128MB'".to_string())]);
        let expected = "\
# Managed by pgrepl: this file is rewritten on every `pgrepl up`; do not edit.
# Put your own settings in pgrepl.toml [postgresql].

include_if_exists 'postgresql.base.conf'    # initdb's original settings; everything below overrides them

cluster_name = 'demo/pg-1'    # names the processes in `ps`, so nodes on one machine can be told apart
hot_standby = on    # standbys serve read-only queries
listen_addresses = '127.0.0.1'    # only the address this node is reached at, not every interface
log_line_prefix = '%m [%p] '    # timestamp and pid on every line; pgrepl adds the node name in front
max_replication_slots = 10    # one slot per replica, with the same headroom as wal senders
max_slot_wal_keep_size = '8GB'    # a slot of a long-gone standby cannot fill the disk; past this the slot is lost and the standby needs a re-clone
max_wal_senders = 10    # 3 + 2 x replicas (at least 10): one per standby plus room for reconnects and base backups
password_encryption = 'scram-sha-256'    # new passwords are stored as SCRAM verifiers, never md5
port = 15432    # this node's port from pgrepl.toml
shared_buffers = '128MB'    # set in pgrepl.toml [postgresql]
unix_socket_directories = '/srv/data/sockets'    # pgrepl connects here as the superuser (peer auth); no shared /var/run needed
wal_keep_size = '160MB'    # WAL kept for standbys that briefly disconnect (pgrepl.toml [replication] wal_keep_size)
wal_level = replica    # standbys need replica-level WAL to stream and replay
wal_log_hints = on    # lets pg_rewind resync a former primary instead of a full re-clone
wal_receiver_timeout = '5s'    # a standby whose primary went silent reconnects after 5 s, not 60
wal_sender_timeout = '5s'    # a standby that stopped answering (lost link, dead host) is dropped after 5 s, not 60 (base backups ask for 60 s)
";
        assert_eq!(render(&plan(&user, 15)), expected);
    }

    #[test]
    fn replication_timeouts_are_short_from_12_and_left_alone_before() {
        let user = BTreeMap::new();
        for (major, short) in [(10, false), (11, false), (12, true), (15, true), (17, true)] {
            let out = render(&plan(&user, major));
            assert_eq!(out.contains("wal_sender_timeout = '5s'"), short, "PostgreSQL {major}");
            assert_eq!(out.contains("wal_receiver_timeout = '5s'"), short, "PostgreSQL {major}");
        }
        let mine = BTreeMap::from([("wal_sender_timeout".to_string(), "'30s'".to_string())]);
        assert!(render(&plan(&mine, 15)).contains("wal_sender_timeout = '30s'    # set in pgrepl.toml [postgresql]"));
    }

    #[test]
    fn user_settings_win() {
        let user = BTreeMap::from([("wal_level".to_string(), "logical".to_string())]);
        let out = render(&plan(&user, 15));
        assert!(out.contains("wal_level = logical    # set in pgrepl.toml [postgresql]\n"));
        assert_eq!(out.matches("wal_level =").count(), 1);
    }

    #[test]
    fn wal_retention_setting_by_major() {
        let user = BTreeMap::new();
        for (major, segments) in [(10, true), (11, true), (12, true), (13, false), (15, false), (17, false)] {
            let out = render(&plan(&user, major));
            assert_eq!(out.contains("wal_keep_segments = 10 "), segments, "PostgreSQL {major}");
            assert_eq!(out.contains("wal_keep_size = '160MB'"), !segments, "PostgreSQL {major}");
        }
    }

    #[test]
    fn old_majors_keep_segments() {
        let user = BTreeMap::new();
        let out = render(&plan(&user, 12));
        assert!(out.contains("wal_keep_segments = 10 "));
        assert!(!out.contains("wal_keep_size ="));
    }
}
