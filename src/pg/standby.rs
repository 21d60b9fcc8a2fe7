//! Rendering a standby's settings, by PostgreSQL major version.
//! 12+ reads them from postgresql.conf and enters standby mode when
//! `standby.signal` exists; 10 and 11 read them from `recovery.conf`.
//! Pure functions; writing them is `datadir`'s job.

use super::conf::{quote, StandbySettings};

/// The file that puts PostgreSQL 12+ in standby mode.
pub(crate) const SIGNAL_FILE: &str = "standby.signal";
/// Where PostgreSQL 10 and 11 read standby settings.
pub(crate) const RECOVERY_CONF: &str = "recovery.conf";

/// Where a standby streams from, and how it authenticates.
#[derive(Debug, Clone)]
pub(crate) struct StandbyPlan<'a> {
    pub primary_host: &'a str,
    pub primary_port: u16,
    pub user: &'a str,
    /// Absolute path of the 0600 passfile: the password never enters a config file.
    pub passfile: &'a str,
    pub application_name: &'a str,
    pub slot: Option<&'a str>,
    /// For `recovery.conf` (PostgreSQL 10 and 11): the file whose creation
    /// promotes the standby, as the seeds configure it.
    pub trigger_file: &'a str,
    /// `restore_command`, when a WAL archive is configured.
    pub restore_command: Option<&'a str>,
    /// `[tls]`: libpq's sslmode (and sslrootcert); empty without TLS.
    pub ssl: Vec<(&'static str, String)>,
}

/// True when this major needs `recovery.conf` instead of `standby.signal`.
pub(crate) fn uses_recovery_conf(major: u32) -> bool {
    major < 12
}

/// Quote one libpq conninfo value if it needs it.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    let mut out = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The `primary_conninfo` string (before GUC quoting). No password: libpq
/// reads it from `passfile`.
pub(crate) fn conninfo(p: &StandbyPlan) -> String {
    [
        ("host", p.primary_host.to_string()),
        ("port", p.primary_port.to_string()),
        ("user", p.user.to_string()),
        ("passfile", p.passfile.to_string()),
        ("application_name", p.application_name.to_string()),
        // Fail over to a reconnect loop quickly instead of hanging on a dead host.
        ("connect_timeout", "5".to_string()),
    ]
    .iter()
    .chain(p.ssl.iter())
    .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Standby GUCs for postgresql.conf (12+).
pub(crate) fn settings(p: &StandbyPlan) -> StandbySettings {
    let mut s = vec![
        (
            "primary_conninfo".to_string(),
            quote(&conninfo(p)),
            "where this standby streams WAL from; the password comes from the 0600 passfile",
        ),
        (
            "recovery_target_timeline".to_string(),
            quote("latest"),
            "follow the primary across promotions (new timelines)",
        ),
    ];
    if let Some(slot) = p.slot {
        s.push((
            "primary_slot_name".to_string(),
            quote(slot),
            "the primary keeps WAL in this slot until this standby has it",
        ));
    }
    if let Some(cmd) = p.restore_command {
        s.push((
            "restore_command".to_string(),
            quote(cmd),
            "WAL the primary no longer has comes from the archive (pgrepl wal-fetch)",
        ));
    }
    s
}

/// The standby settings a primary keeps in its postgresql.conf (12+): those
/// PostgreSQL can only change at a restart on `major`. Removing such a line
/// from the file marks it pending restart even when the value does not
/// change, so after every promotion `status` would ask for a restart that
/// is not needed. They do nothing without standby.signal.
pub(crate) fn kept_on_primary(major: u32) -> &'static [&'static str] {
    match major {
        // primary_conninfo and primary_slot_name became reloadable in 13,
        // restore_command in 14.
        12 => &["recovery_target_timeline", "primary_conninfo", "primary_slot_name", "restore_command"],
        13 => &["recovery_target_timeline", "restore_command"],
        _ => &["recovery_target_timeline"],
    }
}

/// `recovery.conf` for PostgreSQL 10 and 11.
pub(crate) fn recovery_conf(p: &StandbyPlan) -> String {
    let mut out = String::from(super::conf::HEADER);
    out.push_str("standby_mode = 'on'    # stay in recovery and keep streaming\n");
    out.push_str(&format!(
        "trigger_file = {}    # creating this file promotes the standby (pg_ctl promote works too)\n",
        quote(p.trigger_file)
    ));
    for (k, v, why) in settings(p) {
        out.push_str(&format!("{k} = {v}    # {why}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> StandbyPlan<'static> {
        StandbyPlan {
            primary_host: "127.0.0.1",
            primary_port: 15432,
            user: "replicator",
            passfile: "/srv/my data/pgpass",
            application_name: "pg-2",
            slot: Some("pg_2"),
            trigger_file: "/srv/data/pg-2/promote.trigger",
            restore_command: None,
            ssl: Vec::new(),
        }
    }

    /// The standby configuration each major gets, in one table.
    #[test]
    fn a_primary_keeps_only_the_standby_settings_whose_removal_needs_a_restart() {
        assert_eq!(kept_on_primary(15), ["recovery_target_timeline"]);
        assert_eq!(kept_on_primary(13), ["recovery_target_timeline", "restore_command"]);
        assert!(kept_on_primary(12).contains(&"primary_conninfo"));
    }

    #[test]
    fn standby_layout_by_major() {
        for (major, old_layout) in [(10, true), (11, true), (12, false), (13, false), (15, false), (17, false)] {
            assert_eq!(uses_recovery_conf(major), old_layout, "PostgreSQL {major}");
            let p = plan();
            if old_layout {
                let r = recovery_conf(&p);
                for line in [
                    "standby_mode = 'on'",
                    "trigger_file = '/srv/data/pg-2/promote.trigger'",
                    "primary_slot_name = 'pg_2'",
                    "recovery_target_timeline = 'latest'",
                    "primary_conninfo = 'host=127.0.0.1",
                ] {
                    assert!(r.contains(line), "PostgreSQL {major} recovery.conf lacks {line}:\n{r}");
                }
            } else {
                let names: Vec<String> = settings(&p).into_iter().map(|(k, _, _)| k).collect();
                assert_eq!(
                    names,
                    ["primary_conninfo", "recovery_target_timeline", "primary_slot_name"],
                    "PostgreSQL {major}"
                );
            }
        }
    }

    #[test]
    fn conninfo_quotes_paths_with_spaces_and_has_no_password() {
        let c = conninfo(&plan());
        assert_eq!(c, "host=127.0.0.1 port=15432 user=replicator passfile='/srv/my data/pgpass' application_name=pg-2 connect_timeout=5");
        assert!(!c.contains("password="));
    }

    #[test]
    fn settings_snapshot_pg15() {
        let s: Vec<String> = settings(&plan()).into_iter().map(|(k, v, _)| format!("{k} = {v}")).collect();
        assert_eq!(
            s,
            vec![
                "primary_conninfo = 'host=127.0.0.1 port=15432 user=replicator passfile=''/srv/my data/pgpass'' application_name=pg-2 connect_timeout=5'",
                "recovery_target_timeline = 'latest'",
                "primary_slot_name = 'pg_2'",
            ]
        );
    }

    #[test]
    fn pg11_uses_recovery_conf() {
        assert!(uses_recovery_conf(11));
        assert!(!uses_recovery_conf(12));
        let r = recovery_conf(&plan());
        assert!(r.contains("standby_mode = 'on'"));
        assert!(r.contains("primary_slot_name = 'pg_2'"));
        assert!(r.starts_with("# Managed by pgrepl"));
    }
}
