//! `pgrepl init`: write a commented `pgrepl.toml` and a random replication
//! password (mode 0600). Refuses to overwrite an existing config.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// Options of `pgrepl init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
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
}

/// The default first port: below Linux's ephemeral range (32768-60999).
pub const DEFAULT_PORT: u16 = 15432;

/// Write the config and password file into `dir`.
pub fn run(dir: &Path, o: &InitOptions) -> Result<()> {
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
    if last >= 32768 {
        return Err(Error::Usage(format!("ports {}-{last} reach Linux's ephemeral range (32768-60999); pick --port so the last node stays below 32768", o.port)));
    }
    crate::fsutil::create_dir(&dir.join("secrets"), 0o700)?;
    let pw_path = dir.join("secrets/replicator.password");
    if !pw_path.exists() {
        write_atomic(&pw_path, format!("{}\n", random_password()?).as_bytes(), 0o600)?;
    }
    if o.tls {
        write_certs(dir, o)?;
    }
    write_atomic(&cfg, render(o).as_bytes(), 0o644)?;
    println!("wrote {} and {} (mode 0600)", cfg.display(), pw_path.display());
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
    let g = crate::certgen::generate(&o.name, &hosts)?;
    crate::fsutil::create_dir(&certs, 0o700)?;
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

/// The commented config text.
pub fn render(o: &InitOptions) -> String {
    let mut s = format!(
        r#"# pgrepl cluster config. Reference: README.md "Config reference".

[cluster]
name = "{name}"
data_root = "data"                  # relative to this file; node data dirs go in <data_root>/<node>
# postgres_bin = "/usr/lib/postgresql/15/bin"   # found automatically when unset
# os_user = "postgres"              # runs PostgreSQL when pgrepl runs as root

[replication]
user = "replicator"                 # gets the REPLICATION privilege only
password_file = "secrets/replicator.password"   # mode 0600; or password_env = "VAR"
slots = true                        # one physical replication slot per replica
wal_keep_size = "160MB"             # WAL kept for briefly disconnected standbys
"#,
        name = o.name
    );
    for i in 0..o.nodes {
        let role = if i == 0 { "\nrole = \"primary\"                    # bootstrapped as primary" } else { "" };
        s.push_str(&format!(
            "\n[[node]]\nname = \"pg-{}\"\nhost = \"127.0.0.1\"\nport = {}{role}\n",
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

# [[database]]
# name = "chat"
# owner = "chat"                    # created as a login role if missing
# owner_password_file = "secrets/chat.password"
# schema = ["chat.sql"]             # applied once, in order, as the owner

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
