//! Rendering `pg_hba.conf` and `pg_ident.conf`. Pure.
//!
//! Defaults: the OS user reaches the superuser over the Unix socket (peer,
//! through the `pgrepl` ident map); every role may connect over TCP from
//! loopback and the nodes' hosts with scram-sha-256; the replication role
//! may stream from the nodes' hosts. The user's `[[hba]]` rules follow ours.

use std::net::IpAddr;

use crate::config::HbaRule;

/// Inputs for the two files.
#[derive(Debug, Clone)]
pub(crate) struct HbaPlan<'a> {
    pub replication_user: &'a str,
    /// Hosts of every node in the cluster.
    pub node_hosts: Vec<&'a str>,
    /// The database superuser (the OS user PostgreSQL runs as).
    pub superuser: &'a str,
    /// Extra OS users mapped to the superuser (root, when pgrepl runs as root).
    pub admin_os_users: Vec<&'a str>,
    pub extra: &'a [HbaRule],
    /// `[tls]`: pgrepl's TCP lines accept only TLS connections (`hostssl`).
    pub tls: bool,
}

/// An address column for one host: IPs get a single-host mask, names stay.
fn address(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => format!("{host}/32"),
        Ok(IpAddr::V6(_)) => format!("{host}/128"),
        Err(_) => host.to_string(),
    }
}

/// Loopback plus each node's host, without repeats.
fn tcp_addresses(p: &HbaPlan) -> Vec<String> {
    let mut out = vec!["127.0.0.1/32".to_string(), "::1/128".to_string()];
    // "localhost" is already covered by the loopback lines, and as a
    // hostname rule it would cost a DNS lookup per connection.
    for h in p.node_hosts.iter().filter(|h| **h != "localhost") {
        let a = address(h);
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Render `pg_hba.conf`.
pub(crate) fn render_hba(p: &HbaPlan) -> String {
    let mut out = String::from(super::conf::HEADER);
    out.push_str("# TYPE  DATABASE  USER  ADDRESS  METHOD\n\n");
    out.push_str("# The OS user (and root, when pgrepl runs as root) is the superuser over the socket.\n");
    out.push_str("local all all peer map=pgrepl\n\n");
    let host = if p.tls { "hostssl" } else { "host" };
    out.push_str("# Every role over TCP from loopback and the cluster's hosts, password-checked.\n");
    for a in tcp_addresses(p) {
        out.push_str(&format!("{host} all all {a} scram-sha-256\n"));
    }
    out.push_str("\n# Streaming replication and base backups, replication role only.\n");
    for a in tcp_addresses(p) {
        out.push_str(&format!("{host} replication {} {a} scram-sha-256\n", p.replication_user));
    }
    if !p.extra.is_empty() {
        out.push_str("\n# From pgrepl.toml [[hba]].\n");
        for r in p.extra {
            let addr = r.address.as_deref().map(|a| format!(" {a}")).unwrap_or_default();
            out.push_str(&format!("{} {} {}{addr} {}\n", r.kind, r.database, r.user, r.method));
        }
    }
    out
}

/// Render `pg_ident.conf`: the `pgrepl` map used by the socket rule.
pub(crate) fn render_ident(p: &HbaPlan) -> String {
    let mut out = String::from(super::conf::HEADER);
    out.push_str("# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n");
    out.push_str(&format!("pgrepl {} {}\n", p.superuser, p.superuser));
    for u in &p.admin_os_users {
        out.push_str(&format!("pgrepl {u} {}\n", p.superuser));
    }
    out.push_str("# Any other OS user may log in as the database role of the same name.\n");
    out.push_str("pgrepl /^(.*)$ \\1\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_snapshot() {
        let extra = vec![HbaRule {
            kind: "host".into(),
            database: "chat".into(),
            user: "chat".into(),
            address: Some("10.0.0.0/8".into()),
            method: "scram-sha-256".into(),
        }];
        let p = HbaPlan {
            replication_user: "replicator",
            node_hosts: vec!["127.0.0.1", "10.1.2.3", "db-3.internal"],
            superuser: "postgres",
            admin_os_users: vec!["root"],
            extra: &extra,
            tls: false,
        };
        let body = render_hba(&p);
        let expected = "\
local all all peer map=pgrepl

# Every role over TCP from loopback and the cluster's hosts, password-checked.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
host all all 10.1.2.3/32 scram-sha-256
host all all db-3.internal scram-sha-256

# Streaming replication and base backups, replication role only.
host replication replicator 127.0.0.1/32 scram-sha-256
host replication replicator ::1/128 scram-sha-256
host replication replicator 10.1.2.3/32 scram-sha-256
host replication replicator db-3.internal scram-sha-256

# From pgrepl.toml [[hba]].
host chat chat 10.0.0.0/8 scram-sha-256
";
        assert!(body.ends_with(expected), "{body}");
        assert!(!body.contains("trust"));

        // With [tls], pgrepl's own TCP lines refuse connections without TLS;
        // the user's rules stay as written.
        let tls = render_hba(&HbaPlan { tls: true, ..p });
        assert!(tls.contains("\nhostssl all all 127.0.0.1/32 scram-sha-256\n"), "{tls}");
        assert!(tls.contains("\nhostssl replication replicator 10.1.2.3/32 scram-sha-256\n"), "{tls}");
        assert!(!tls.contains("\nhost all") && !tls.contains("\nhost replication"), "{tls}");
        assert!(tls.ends_with("host chat chat 10.0.0.0/8 scram-sha-256\n"));
    }

    #[test]
    fn ident_maps_root_to_superuser() {
        let p = HbaPlan {
            replication_user: "r",
            node_hosts: vec![],
            superuser: "postgres",
            admin_os_users: vec!["root"],
            extra: &[],
            tls: false,
        };
        let id = render_ident(&p);
        assert!(id.contains("pgrepl postgres postgres\npgrepl root postgres\n"));
    }
}
