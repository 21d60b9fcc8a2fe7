//! `pgrepl init`: write a commented `pgrepl.toml` and a random replication
//! password (mode 0600). Refuses to overwrite an existing config.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::pg::fsutil::write_atomic;

/// Options of `pgrepl init`.
#[derive(Debug, Clone)]
pub(crate) struct InitOptions {
    /// Total nodes (1 primary + N-1 replicas).
    pub nodes: u16,
    /// Port of the first node; the others follow.
    pub port: u16,
    /// Cluster name.
    pub name: String,
    /// Make a CA and a server certificate and turn `[tls]` on.
    pub tls: bool,
    /// Extra names or addresses the certificate must carry (other hosts).
    pub tls_hosts: Vec<String>,
    /// Health-API port of the first node (`--api-port`); the others follow.
    /// Default: port + 10000 when that stays below 32768, else chosen so it does.
    pub api_port: Option<u16>,
    /// `[cluster] data_root` (`--data-root`); default `data`, beside the config.
    pub data_root: Option<String>,
}

/// Ports below this are ours to use: Linux hands out 32768-60999 as source ports.
const EPHEMERAL: u32 = 32768;

/// The first node's api_port to write, or None when the default (port +
/// 10000 for each node) fits. `init` never writes a config `up` refuses:
/// every node port and api port below 32768, none shared.
pub(crate) fn api_ports(o: &InitOptions) -> Result<Option<u16>> {
    let n = u32::from(o.nodes);
    let nodes = u32::from(o.port)..u32::from(o.port) + n;
    let fits = |base: u32| base >= 1024 && base + n <= EPHEMERAL && (base + n <= nodes.start || base >= nodes.end);
    if let Some(a) = o.api_port {
        if !fits(u32::from(a)) {
            return Err(Error::Usage(format!(
                "--api-port {a}: the health-API ports {a}-{} must lie between 1024 and 32767 and not overlap the node ports {}-{}",
                u32::from(a) + n - 1,
                nodes.start,
                nodes.end - 1
            )));
        }
        return Ok(Some(a));
    }
    let default = nodes.start + 10000;
    if fits(default) {
        return Ok(None);
    }
    // Below the node ports, else right after them.
    [nodes.start.saturating_sub(10000), nodes.end].into_iter().find(|&b| fits(b)).map(|b| Some(b as u16)).ok_or_else(
        || {
            Error::Usage(format!(
                "no room below 32768 for {n} health-API ports beside ports {}-{}; pass --api-port",
                nodes.start,
                nodes.end - 1
            ))
        },
    )
}

/// The default first port: below Linux's ephemeral range (32768-60999).
pub(crate) const DEFAULT_PORT: u16 = 15432;

/// Write the config and password file into `dir`.
pub(crate) fn run(dir: &Path, o: &InitOptions) -> Result<()> {
    let cfg = dir.join(crate::config::DEFAULT_FILE);
    if cfg.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; pgrepl init never overwrites a config. Edit it, or init into another directory",
            cfg.display()
        )));
    }
    if o.nodes == 0 {
        return Err(Error::Usage("--nodes must be at least 1".into()));
    }
    let last = o.port as u32 + o.nodes as u32 - 1;
    if last >= EPHEMERAL || o.port < 1024 {
        return Err(Error::Usage(format!("ports {}-{last} must lie between 1024 and 32767 (Linux hands out 32768-60999 as source ports); pick another --port", o.port)));
    }
    let api = api_ports(o)?;
    crate::pg::fsutil::create_dir(&dir.join("secrets"), 0o700)?;
    let pw_path = dir.join("secrets/replicator.password");
    if !pw_path.exists() {
        write_atomic(&pw_path, format!("{}\n", random_password()?).as_bytes(), 0o600)?;
    }
    if o.tls {
        write_certs(dir, o)?;
    }
    let app_pw = dir.join("secrets/app.password");
    if !app_pw.exists() {
        write_atomic(&app_pw, format!("{}\n", random_password()?).as_bytes(), 0o600)?;
    }
    write_atomic(&cfg, render(o, api).as_bytes(), 0o644)?;
    println!("wrote {} and {} and {} (mode 0600)", cfg.display(), pw_path.display(), app_pw.display());
    println!("start the cluster with: pgrepl -c {} up", cfg.display());
    Ok(())
}

/// `--tls`: a CA and a server certificate in `certs/`, keys 0600. Never
/// overwrites: existing certificates are the user's.
fn write_certs(dir: &Path, o: &InitOptions) -> Result<()> {
    let certs = dir.join("certs");
    if certs.join("server.crt").exists() || certs.join("ca.crt").exists() {
        return Err(Error::Usage(format!(
            "{} already holds certificates; pgrepl init never overwrites them. Drop --tls, or init into another directory",
            certs.display()
        )));
    }
    let mut hosts: Vec<String> = vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];
    if let Ok(h) = nix::unistd::gethostname() {
        hosts.push(h.to_string_lossy().into_owned());
    }
    for h in &o.tls_hosts {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    let g = crate::pg::certgen::generate(&o.name, &hosts)?;
    crate::pg::fsutil::create_dir(&certs, 0o700)?;
    write_atomic(&certs.join("ca.key"), g.ca_key.as_bytes(), 0o600)?;
    write_atomic(&certs.join("ca.crt"), g.ca_cert.as_bytes(), 0o644)?;
    write_atomic(&certs.join("server.key"), g.server_key.as_bytes(), 0o600)?;
    write_atomic(&certs.join("server.crt"), g.server_cert.as_bytes(), 0o644)?;
    println!(
        "wrote a CA and a server certificate for {} in {} (keys mode 0600); keep ca.key offline in production",
        hosts.join(", "),
        certs.display()
    );
    Ok(())
}

/// 32 characters from /dev/urandom, alphanumeric so it needs no escaping.
fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut f = std::fs::File::open("/dev/urandom").map_err(|e| Error::io("/dev/urandom", e))?;
    let mut out = String::new();
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        f.read_exact(&mut buf).map_err(|e| Error::io("/dev/urandom", e))?;
        // 248 = 4 × 62: reject the tail to keep the choice uniform.
        out.extend(buf.iter().filter(|b| **b < 248).map(|b| ALPHABET[(*b % 62) as usize] as char));
    }
    out.truncate(32);
    Ok(out)
}

/// The commented config text; `api` is the first node's api_port when the
/// default does not fit.
pub(crate) fn render(o: &InitOptions, api: Option<u16>) -> String {
    let mut s = format!(
        r#"# pgrepl cluster config. Reference: README.md "Config reference".

[cluster]
name = "{name}"
data_root = {data_root:<24}# relative to this file; node data dirs go in <data_root>/<node>
# postgres_bin = "/usr/lib/postgresql/15/bin"   # found automatically when unset
# os_user = "postgres"              # runs PostgreSQL when pgrepl runs as root

[replication]
user = "replicator"                 # gets the REPLICATION privilege only
password_file = "secrets/replicator.password"   # mode 0600; or password_env = "VAR"
slots = true                        # one physical replication slot per replica
wal_keep_size = "160MB"             # WAL kept for briefly disconnected standbys
"#,
        name = o.name,
        data_root = toml::Value::String(o.data_root.clone().unwrap_or_else(|| "data".into())).to_string() + " ",
    );
    for i in 0..o.nodes {
        let role = if i == 0 { "\nrole = \"primary\"                    # bootstrapped as primary" } else { "" };
        let api = api.map_or(String::new(), |a| {
            format!("\napi_port = {}                    # health API (port + 10000 would reach 32768)", a + i)
        });
        s.push_str(&format!(
            "\n[[node]]\nname = \"pg-{}\"\nhost = \"127.0.0.1\"\nport = {}{role}{api}\n",
            i + 1,
            o.port + i
        ));
    }
    let tls = if o.tls {
        r#"[tls]                               # encrypted, verified TCP (pgrepl init --tls made these)
cert_file = "certs/server.crt"
key_file = "certs/server.key"
ca_file = "certs/ca.crt"            # clients check the certificate: sslmode verify-full
"#
    } else {
        r#"# [tls]                             # encrypted TCP; `pgrepl init --tls` makes a CA and certificate
# cert_file = "certs/server.crt"
# key_file = "certs/server.key"
# ca_file = "certs/ca.crt"
"#
    };
    s.push_str(
        &r#"
[postgresql]                        # settings for every node; these win over pgrepl's defaults
shared_buffers = "128MB"

[[database]]                        # your application's database; `up` prints a URI for it
name = "app"
owner = "app"                       # created as a login role (no other privileges)
owner_password_file = "secrets/app.password"    # mode 0600, written by pgrepl init
# schema = ["app.sql"]              # applied once, in order, as the owner

{tls}
# [[hba]]                           # extra pg_hba.conf rules, after pgrepl's own
# type = "host"
# database = "all"
# user = "all"
# address = "10.0.0.0/8"
# method = "scram-sha-256"
"#
        .replace("{tls}", tls),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(nodes: u16, port: u16) -> InitOptions {
        InitOptions { nodes, port, name: "demo".into(), tls: false, tls_hosts: vec![], api_port: None, data_root: None }
    }

    /// Fault testing found `init --port 28000` writing a config `up` refused
    /// (its default api ports, port + 10000, reached the ephemeral range).
    /// Every port `init` accepts gives a config that validates.
    #[test]
    fn every_port_init_accepts_gives_a_config_that_validates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        for f in ["replicator", "app"] {
            std::fs::write(dir.path().join(format!("secrets/{f}.password")), "pw\n").unwrap();
        }
        let path = dir.path().join("pgrepl.toml");
        for nodes in [1u16, 3, 5] {
            // Every 37th port, and every port near a boundary of the choice
            // (the default stops fitting at 22768 - nodes; port - 10000 needs
            // port >= 11024), which keeps the test fast in a debug build.
            let edges = [1024u16, 11024, 22768 - nodes, 32768 - nodes];
            let near = |p: u16| edges.iter().any(|&e| p.abs_diff(e) <= 12);
            for port in (1024..=(32768 - nodes)).filter(|&p| p % 37 == 0 || near(p)) {
                let o = opts(nodes, port);
                let api = api_ports(&o).unwrap_or_else(|e| panic!("--port {port} --nodes {nodes}: {e}"));
                let text = render(&o, api);
                if let Err(e) = crate::config::parse(&path, &text) {
                    panic!("--port {port} --nodes {nodes} wrote a config that is refused: {e}");
                }
            }
        }
    }

    #[test]
    fn api_port_is_checked_and_used() {
        let o = InitOptions { api_port: Some(20000), ..opts(3, 15432) };
        assert_eq!(api_ports(&o).unwrap(), Some(20000));
        assert!(render(&o, Some(20000)).contains("api_port = 20002"));
        let clash = InitOptions { api_port: Some(15433), ..opts(3, 15432) };
        assert!(api_ports(&clash).unwrap_err().to_string().contains("not overlap the node ports 15432-15434"));
        let high = InitOptions { api_port: Some(32767), ..opts(3, 15432) };
        assert!(api_ports(&high).is_err());
        // The default needs no api_port line.
        assert_eq!(api_ports(&opts(3, 15432)).unwrap(), None);
        assert_eq!(api_ports(&opts(3, 28000)).unwrap(), Some(18000));
    }
}
