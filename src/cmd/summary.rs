//! What `up` prints once the cluster is up: the nodes, their roles and
//! ports, where the sockets are, and a libpq URI that works as printed.

use std::time::Duration;

use crate::config::Node;
use crate::output::Output;
use crate::store::ctx::Ctx;

/// Nodes, roles, ports, and a libpq multi-host connection string.
pub(crate) fn print(ctx: &Ctx, selected: &[Node], out: &Output, took: Duration) {
    if took > Duration::ZERO {
        out.info(format!("cluster {} is up ({:.1}s)", ctx.cfg.cluster_name, took.as_secs_f64()));
    } else {
        out.info(format!("cluster {} is up", ctx.cfg.cluster_name));
    }
    let w = ctx.cfg.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
    out.info(format!("  {:<w$}  {:<7}  {:<15}  {:<5}  DATA", "NODE", "ROLE", "HOST", "PORT"));
    let view = crate::store::view::ClusterView::read_for_display(ctx);
    for n in &ctx.cfg.nodes {
        let here = if selected.iter().any(|s| s.name == n.name) {
            n.data_dir.display().to_string()
        } else {
            "(other host)".to_string()
        };
        out.info(format!(
            "  {:<w$}  {:<7}  {:<15}  {:<5}  {here}",
            n.name,
            view.role_of(n).to_string(),
            n.host,
            n.port
        ));
    }
    out.info(format!("  sockets: {} (superuser `{}`, peer auth)", ctx.layout.socket_dir().display(), ctx.runas.name));
    match ctx.cfg.databases.iter().find(|d| d.owner_password.is_some()) {
        Some(db) => {
            let mut params = vec![("passfile", ctx.layout.client_passfile().to_string_lossy().into_owned())];
            if let Some(t) = &ctx.cfg.tls {
                params.extend(crate::pg::tls::libpq_params(t, &ctx.layout.root_cert()));
            }
            out.info(format!("  connect: psql '{}'", connection_uri(&ctx.cfg.nodes, &db.owner, &db.name, &params)));
        }
        None => out.info(format!(
            "  connect: {} (no role has a TCP password: give a [[database]] an owner_password_file)",
            connection_uri(&ctx.cfg.nodes, "", "postgres", &[])
        )),
    }
}

/// `postgresql://user@h1:p1,h2:p2/db?target_session_attrs=read-write&...`:
/// a libpq URI that finds the writable primary among every node. Extra
/// parameters (the passfile, TLS) are percent-encoded; no password is ever in it.
pub(crate) fn connection_uri(nodes: &[Node], user: &str, db: &str, params: &[(&str, String)]) -> String {
    let hosts: Vec<String> =
        nodes
            .iter()
            .map(|n| {
                if n.host.contains(':') {
                    format!("[{}]:{}", n.host, n.port)
                } else {
                    format!("{}:{}", n.host, n.port)
                }
            })
            .collect();
    let user = if user.is_empty() { String::new() } else { format!("{}@", encode(user)) };
    let mut uri = format!("postgresql://{user}{}/{}?target_session_attrs=read-write", hosts.join(","), encode(db));
    for (k, v) in params {
        uri.push_str(&format!("&{k}={}", encode(v)));
    }
    uri
}

/// Percent-encode all but RFC 3986's unreserved characters and `/`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn the_connection_uri_names_every_node_and_the_passfile_but_no_password() {
        let node = |name: &str, host: &str, port: u16| Node {
            name: name.into(),
            host: host.into(),
            port,
            bootstrap_role: Role::Replica,
            data_dir: "/srv".into(),
            line: 1,
            api_port: port + 10000,
            failover_priority: 1,
        };
        let nodes = [node("pg-1", "127.0.0.1", 15432), node("pg-2", "::1", 15433)];
        assert_eq!(
            connection_uri(&nodes, "app", "app", &[("passfile", "/srv/my data/client.pgpass".into())]),
            "postgresql://app@127.0.0.1:15432,[::1]:15433/app?target_session_attrs=read-write&passfile=/srv/my%20data/client.pgpass"
        );
        assert_eq!(
            connection_uri(&nodes, "", "postgres", &[]),
            "postgresql://127.0.0.1:15432,[::1]:15433/postgres?target_session_attrs=read-write"
        );
    }
}
