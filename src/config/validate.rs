//! Turns the parsed file into a [`Config`], collecting *every* problem with
//! its `file:line:col` before giving up. Touches nothing on disk except to
//! read the files the config names (passwords, schemas).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::file;
mod api;

use super::{Config, Database, Failover, HbaRule, Monitor, Node, Replication, Role, Secret, Supervisor};
use crate::domain::modes::CloneMethod;
use crate::domain::units::{parse_duration, ByteSize};
use crate::error::{Error, Result};

/// Maps byte offsets in the source to `file:line:col`.
struct Locator<'a> {
    file: String,
    src: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
        (line, col)
    }
    fn at(&self, span: Range<usize>) -> String {
        let (l, c) = self.line_col(span.start);
        format!("{}:{l}:{c}", self.file)
    }
}

/// Collects problems as they are found.
struct Problems<'a> {
    loc: Locator<'a>,
    list: Vec<String>,
    /// Non-fatal remarks, reported when the command runs.
    warnings: Vec<String>,
    /// A secret file this user may not read is not a problem (observing commands).
    lenient_secrets: bool,
}

impl Problems<'_> {
    fn push<T>(&mut self, at: &Spanned<T>, msg: impl AsRef<str>) {
        let where_ = self.loc.at(at.span());
        self.list.push(format!("{where_}: {}", msg.as_ref()));
    }
    fn push_plain(&mut self, msg: impl AsRef<str>) {
        self.list.push(format!("{}: {}", self.loc.file, msg.as_ref()));
    }
}

/// Parse and validate config text read from `path`.
pub(crate) fn parse(path: &Path, src: &str) -> Result<Config> {
    parse_with(path, src, false)
}

/// [`parse`]; with `lenient_secrets`, secret files this user may not read
/// are taken as empty instead of refused.
pub(super) fn parse_with(path: &Path, src: &str, lenient_secrets: bool) -> Result<Config> {
    let loc = Locator { file: path.display().to_string(), src };
    let raw: file::File = toml::from_str(src).map_err(|e| {
        let where_ = e.span().map_or_else(|| loc.file.clone(), |s| loc.at(s));
        Error::Config { problems: vec![format!("{where_}: {}", e.message().trim())] }
    })?;
    let base = base_dir(path);
    let mut p = Problems { loc, list: Vec::new(), warnings: Vec::new(), lenient_secrets };
    let cfg = build(&raw, &base, path, &mut p);
    // Report in file order, whatever order the checks ran in.
    p.list.sort_by_key(|m| position(m));
    if p.list.is_empty() {
        Ok(cfg)
    } else {
        Err(Error::Config { problems: p.list })
    }
}

/// (line, col) from a `file:line:col: message` problem, for sorting.
fn position(msg: &str) -> (usize, usize) {
    let mut parts = msg.splitn(4, ':').skip(1).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Paths in the config are relative to the config file's directory.
fn base_dir(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn build(raw: &file::File, base: &Path, path: &Path, p: &mut Problems) -> Config {
    let name = raw.cluster.name.get_ref().clone();
    if !is_simple_name(&name) {
        p.push(&raw.cluster.name, "cluster name must be letters, digits, `-` or `_`");
    }
    let data_root = resolve(base, raw.cluster.data_root.as_ref().map_or("data", |s| s.get_ref()));
    let os_user = raw.cluster.os_user.as_ref().map_or("postgres", |s| s.get_ref()).to_string();
    let replication = replication(&raw.replication, raw.node.len(), base, p);
    let nodes = nodes(raw, base, &data_root, p);
    let databases = databases(&raw.database, base, p);
    let roles = roles(&raw.role, base, p);
    let hba = hba(&raw.hba, p);
    let postgresql = postgresql(&raw.postgresql, p);
    let supervisor = Supervisor {
        start_timeout: duration(&raw.supervisor.start_timeout, "60s", p),
        stop_timeout: duration(&raw.supervisor.stop_timeout, "60s", p),
        restart_backoff_max: duration(&raw.supervisor.restart_backoff_max, "30s", p),
    };
    let m = &raw.monitor;
    let monitor = Monitor {
        interval: duration(&m.interval, "1s", p),
        warn_lag: duration(&m.warn_lag, "60s", p),
        crit_lag: duration(&m.crit_lag, "300s", p),
        warn_conflicts: match &m.warn_conflicts {
            None => 100,
            Some(v) => u64::try_from(*v.get_ref()).unwrap_or_else(|_| {
                p.push(v, "warn_conflicts must be zero or more");
                0
            }),
        },
        crit_slot_retained: size(&m.crit_slot_retained, "1GB", p),
        role: m.role.as_ref().map(|r| {
            if !raw.role.iter().any(|d| d.name.get_ref() == r.get_ref()) {
                p.push(r, format!("[monitor] role `{}` is not a [[role]] in this file; declare it (with in_roles = [\"pg_monitor\"] and a password_file)", r.get_ref()));
            }
            r.get_ref().clone()
        }),
    };
    if monitor.interval.is_zero() {
        if let Some(i) = &m.interval {
            p.push(i, "the monitor interval must be more than 0");
        }
    }
    if monitor.warn_lag > monitor.crit_lag {
        p.push_plain(
            "[monitor] warn_lag is larger than crit_lag; a replica would be critical before it is warned about",
        );
    }
    let api = api::api(&raw.api, raw.tls.is_some(), base, p);
    let f = &raw.failover;
    let failover = Failover {
        mode: match f.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("automatic") => crate::domain::modes::FailoverMode::Automatic,
            Some("manual") => crate::domain::modes::FailoverMode::Manual,
            Some(other) => {
                if let Some(m) = &f.mode {
                    p.push(m, format!("failover mode `{other}` is not `automatic` or `manual`"));
                }
                crate::domain::modes::FailoverMode::Manual
            }
        },
        primary_start_timeout: duration(&f.primary_start_timeout, "10s", p),
        auto_rejoin: f.auto_rejoin.unwrap_or(true),
        rejoin_interval: duration(&f.rejoin_interval, "5s", p),
    };
    Config {
        path: path.to_path_buf(),
        cluster_name: name,
        data_root,
        postgres_bin: raw.cluster.postgres_bin.as_ref().map(|s| resolve(base, s.get_ref())),
        os_user,
        replication,
        nodes,
        postgresql,
        databases,
        roles,
        hba,
        supervisor,
        monitor,
        api,
        failover,
        archive: raw.archive.dir.as_ref().map(|d| resolve(base, d.get_ref())),
        tls: raw.tls.as_ref().and_then(|t| tls(t, base, p)),
        hooks: raw.hooks.as_ref().map(|h| {
            let on_event = resolve(base, h.on_event.get_ref());
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(&on_event) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
                Ok(_) => {
                    p.push(&h.on_event, format!("hook {} is not an executable file; `chmod +x` it", on_event.display()))
                }
                Err(e) => p.push(&h.on_event, format!("hook {}: {e}; fix the path", on_event.display())),
            }
            super::Hooks { on_event, timeout: duration(&h.timeout, "30s", p) }
        }),
        log_json: match raw.log.format.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                if let Some(f) = &raw.log.format {
                    p.push(f, format!("[log] format `{other}` is not `text` or `json`"));
                }
                false
            }
        },
        etcd: raw.etcd.as_ref().map(|e| etcd(e.get_ref(), base, p)),
        warnings: std::mem::take(&mut p.warnings),
    }
}

fn etcd(e: &file::Etcd, base: &Path, p: &mut Problems) -> super::Etcd {
    if e.endpoints.get_ref().is_empty() {
        p.push(&e.endpoints, "[etcd] endpoints is empty; list every etcd member's client URL");
    }
    let mut schemes = std::collections::BTreeSet::new();
    for url in e.endpoints.get_ref() {
        let u = url.get_ref();
        let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
        if let Some(scheme) = u.split_once("://").map(|(s, _)| s).filter(|_| rest.is_some()) {
            schemes.insert(scheme);
        }
        if !rest.is_some_and(|hp| {
            hp.trim_end_matches('/')
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
        }) {
            p.push(url, format!("etcd endpoint `{u}` is not a URL; write it as http://HOST:PORT or https://HOST:PORT"));
        }
    }
    if schemes.len() > 1 {
        p.push(&e.endpoints, "[etcd] endpoints mix http:// and https://; use one scheme for every member");
    }
    let tls = schemes.contains("https");
    for f in [&e.ca_file, &e.cert_file, &e.key_file].into_iter().flatten().filter(|_| !tls) {
        p.push(f, "[etcd] TLS files are set but the endpoints are http://; write them as https://HOST:PORT");
    }
    let file = |f: &Spanned<String>, what: &str, p: &mut Problems| {
        let path = resolve(base, f.get_ref());
        if !path.is_file() {
            p.push(f, format!("[etcd] {what} {} does not exist; fix the path", path.display()));
        }
        path
    };
    let ca_file = e.ca_file.as_ref().map(|f| file(f, "ca_file", p));
    let client_cert = match (&e.cert_file, &e.key_file) {
        (Some(c), Some(k)) => {
            let key = file(k, "key_file", p);
            warn_if_readable(p, k, &key, "[etcd] key_file");
            Some((file(c, "cert_file", p), key))
        }
        (Some(f), None) | (None, Some(f)) => {
            p.push(
                f,
                "[etcd] cert_file and key_file go together; set both (a client certificate and its key) or neither",
            );
            None
        }
        (None, None) => None,
    };
    let auth = match (&e.username, &e.password_file) {
        (Some(u), Some(f)) => {
            if !tls {
                p.warnings.push(format!(
                    "{}: [etcd] username over http:// sends its password unencrypted; use https:// endpoints",
                    p.loc.at(u.span())
                ));
            }
            read_secret_file(base, f, "[etcd] password", p).map(|pw| (u.get_ref().clone(), pw))
        }
        (Some(f), None) | (None, Some(f)) => {
            p.push(f, "[etcd] username and password_file go together; set both or neither");
            None
        }
        (None, None) => None,
    };
    let ttl = duration(&e.ttl, "3s", p);
    if let Some(t) = e.ttl.as_ref().filter(|_| ttl < Duration::from_secs(2) && ttl > Duration::ZERO) {
        p.push(
            t,
            format!(
                "[etcd] ttl {} is too short: a leader must renew several times per TTL; use at least 2s (default 3s)",
                t.get_ref()
            ),
        );
    }
    let prefix = e.prefix.as_ref().map_or("/pgrepl", |s| s.get_ref()).trim_end_matches('/').to_string();
    if let Some(s) = e.prefix.as_ref().filter(|s| !s.get_ref().starts_with('/')) {
        p.push(s, format!("[etcd] prefix `{}` must start with `/`, e.g. \"/pgrepl\"", s.get_ref()));
    }
    super::Etcd {
        endpoints: e.endpoints.get_ref().iter().map(|u| u.get_ref().clone()).collect(),
        prefix,
        ttl,
        ca_file,
        client_cert,
        auth,
    }
}

fn is_simple_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A PostgreSQL identifier we create (role or database): kept simple so it
/// never needs quoting in pg_hba.conf or the passfile.
fn is_identifier(s: &str) -> bool {
    is_simple_name(s) && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn duration(v: &Option<Spanned<String>>, default: &str, p: &mut Problems) -> Duration {
    match v {
        None => parse_duration(default).unwrap_or_default(),
        Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|e| {
            p.push(s, e);
            Duration::ZERO
        }),
    }
}

fn size(v: &Option<Spanned<String>>, default: &str, p: &mut Problems) -> ByteSize {
    match v {
        None => ByteSize::parse(default).unwrap_or(ByteSize(0)),
        Some(s) => ByteSize::parse(s.get_ref()).unwrap_or_else(|e| {
            p.push(s, e);
            ByteSize(0)
        }),
    }
}

/// `[tls]`: read the PEM files now, so a wrong path or a file that is not
/// PEM is reported at its line before anything starts.
fn tls(t: &Spanned<file::Tls>, base: &Path, p: &mut Problems) -> Option<super::Tls> {
    let mut pem = |s: &Spanned<String>, what: &str, secret: bool| -> Option<String> {
        let path = resolve(base, s.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(text) if text.contains("-----BEGIN ") => {
                if secret {
                    warn_if_readable(p, s, &path, "TLS key file");
                }
                Some(text)
            }
            Ok(_) => {
                p.push(s, format!("{what} {} is not a PEM file (no -----BEGIN line)", path.display()));
                None
            }
            Err(e) => {
                p.push(s, format!("cannot read {what} {}: {e}; fix the path", path.display()));
                None
            }
        }
    };
    let t_ref = t.get_ref();
    let cert = pem(&t_ref.cert_file, "TLS certificate", false);
    let key = pem(&t_ref.key_file, "TLS key", true);
    let ca = t_ref.ca_file.as_ref().map(|c| pem(c, "TLS CA file", false));
    let sslmode = match t_ref.sslmode.as_ref() {
        None if ca.is_some() => crate::domain::modes::SslMode::VerifyFull,
        None => crate::domain::modes::SslMode::Require,
        Some(m) => match crate::domain::modes::SslMode::parse(m.get_ref()) {
            Some(mode) if mode.verifies() && ca.is_none() => {
                p.push(m, format!("sslmode `{}` verifies the nodes' certificate, so [tls] needs ca_file", m.get_ref()));
                return None;
            }
            Some(mode) => mode,
            None => {
                p.push(m, format!("sslmode `{}` is not `require`, `verify-ca` or `verify-full`", m.get_ref()));
                return None;
            }
        },
    };
    Some(super::Tls {
        cert_pem: cert?,
        key_pem: Secret::new(key?),
        ca_pem: match ca {
            Some(c) => Some(c?),
            None => None,
        },
        sslmode,
    })
}

/// Warn (not fail) when a file holding a secret is readable by others.
fn warn_if_readable(p: &mut Problems, s: &Spanned<String>, path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
    if mode & 0o077 != 0 {
        let at = p.loc.at(s.span());
        p.warnings.push(format!(
            "{at}: {what} {} is readable by other users (mode {:o}); `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
}

/// Read a one-line secret file. A missing file is a config problem.
fn read_secret_file(base: &Path, s: &Spanned<String>, what: &str, p: &mut Problems) -> Option<Secret> {
    let path = resolve(base, s.get_ref());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let pw = text.lines().next().unwrap_or("").to_string();
            if pw.is_empty() {
                p.push(s, format!("{what} file {} is empty; put the password on its first line", path.display()));
                None
            } else {
                warn_if_readable(p, s, &path, &format!("{what} file"));
                Some(Secret::new(pw))
            }
        }
        Err(e) if p.lenient_secrets && e.kind() == std::io::ErrorKind::PermissionDenied => {
            Some(Secret::new(String::new()))
        }
        Err(e) => {
            p.push(
                s,
                format!("cannot read {what} file {}: {e}; create it (mode 0600) or fix the path", path.display()),
            );
            None
        }
    }
}

fn replication(r: &file::Replication, node_count: usize, base: &Path, p: &mut Problems) -> Replication {
    let user = r.user.as_ref().map_or("replicator", |s| s.get_ref()).to_string();
    if let Some(u) = &r.user {
        if !is_identifier(&user) {
            p.push(u, "replication user must be letters, digits, `-` or `_`, not starting with a digit");
        }
    }
    let sources = [r.password_file.is_some(), r.password_env.is_some(), r.password.is_some()];
    let password = match (&r.password_file, &r.password_env, &r.password) {
        _ if sources.iter().filter(|b| **b).count() > 1 => {
            p.push_plain("[replication] sets more than one of password_file, password_env, password; keep one");
            None
        }
        (Some(f), _, _) => read_secret_file(base, f, "replication password", p),
        (_, Some(var), _) => match std::env::var(var.get_ref()) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                p.push(var, format!("environment variable {} is not set or empty", var.get_ref()));
                None
            }
        },
        (_, _, Some(lit)) => {
            p.warnings.push(format!(
                "{}: a literal replication password is in the config file; prefer password_file (mode 0600) or password_env",
                p.loc.at(lit.span())
            ));
            Some(Secret::new(lit.get_ref().clone()))
        }
        (None, None, None) => {
            p.push_plain("[replication] needs password_file (or password_env); `pgrepl init` writes one for you");
            None
        }
    };
    let wal_keep_size = size(&r.wal_keep_size, "160MB", p);
    let max_wal_senders = r.max_wal_senders.as_ref().and_then(|m| match u32::try_from(*m.get_ref()) {
        Ok(v) if v >= 1 => Some(v),
        _ => {
            p.push(m, "max_wal_senders must be a positive number");
            None
        }
    });
    Replication {
        user,
        password: password.unwrap_or_else(|| Secret::new(String::new())),
        slots: r.slots.unwrap_or(true),
        wal_keep_size,
        max_wal_senders,
        clone_timeout: duration(&r.clone_timeout, "120s", p),
        max_slot_wal_keep_size: size(&r.max_slot_wal_keep_size, "8GB", p),
        auto_reclone: r.auto_reclone.unwrap_or(false),
        clone_method: match r.clone_method.as_ref().map(|d| d.get_ref().as_str()) {
            None | Some("auto") => CloneMethod::Auto,
            Some("pg_basebackup") => CloneMethod::PgBasebackup,
            Some("builtin") => CloneMethod::Builtin,
            Some(other) => {
                if let Some(d) = &r.clone_method {
                    p.push(d, format!("clone_method `{other}` is not `auto`, `pg_basebackup` or `builtin`"));
                }
                CloneMethod::Auto
            }
        },
        durability: match r.durability.as_ref().map(|d| d.get_ref().as_str()) {
            None | Some("async") => crate::domain::modes::Durability::Async,
            Some("sync") => crate::domain::modes::Durability::Sync,
            Some("sync-strict") => crate::domain::modes::Durability::SyncStrict,
            Some(other) => {
                if let Some(d) = &r.durability {
                    p.push(d, format!("durability `{other}` is not `async`, `sync` or `sync-strict`"));
                }
                crate::domain::modes::Durability::Async
            }
        },
        sync_count: match &r.sync_count {
            None => 1,
            Some(n) if *n.get_ref() < 1 => {
                p.push(n, "sync_count must be at least 1");
                1
            }
            // Every node but the primary can be a synchronous standby; asking
            // for more would block every commit (sync-strict) or never leave
            // the degraded state (sync).
            Some(n) if synchronous(r) && *n.get_ref() as usize >= node_count.max(1) => {
                let standbys = node_count.saturating_sub(1);
                p.push(
                    n,
                    format!(
                        "sync_count = {} but the cluster has only {standbys} standby(s) that could confirm a commit; lower sync_count to at most {standbys} or add [[node]]s",
                        n.get_ref()
                    ),
                );
                1
            }
            Some(n) => *n.get_ref() as usize,
        },
    }
}

/// Whether the config asks for synchronous replication (`sync` or `sync-strict`).
fn synchronous(r: &file::Replication) -> bool {
    r.durability.as_ref().is_some_and(|d| matches!(d.get_ref().as_str(), "sync" | "sync-strict"))
}

/// The physical slot name for a node: slot names allow only `[a-z0-9_]`.
pub(crate) fn slot_name(node: &str) -> String {
    node.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

fn nodes(raw: &file::File, base: &Path, data_root: &Path, p: &mut Problems) -> Vec<Node> {
    if raw.node.is_empty() {
        p.push_plain("no [[node]] defined; add at least one (the first becomes the primary)");
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut slots: HashMap<String, String> = HashMap::new();
    let mut addrs: HashMap<(String, i64), String> = HashMap::new();
    let mut dirs: HashMap<PathBuf, String> = HashMap::new();
    let mut primaries = Vec::new();
    // Per host: nodes on different hosts may share ports (Patroni users run
    // 5432 and 8008 everywhere); `[api] listen` binds on each node's host.
    let mut api_ports: Vec<(u16, String, Range<usize>, bool, String)> = Vec::new();
    for n in &raw.node {
        let name = n.name.get_ref().clone();
        let line = p.loc.line_col(n.name.span().start).0;
        if !is_simple_name(&name) {
            p.push(&n.name, "node name must be letters, digits, `-` or `_`");
        }
        let duplicate = names.contains_key(&name);
        if let Some(first) = names.insert(name.clone(), line) {
            p.push(
                &n.name,
                format!("duplicate node name `{name}` (first defined at line {first}); node names must be unique"),
            );
        } else if let Some(other) = slots.insert(slot_name(&name), name.clone()) {
            p.push(
                &n.name,
                format!(
                    "node `{name}` and node `{other}` map to the same slot name `{}`; rename one",
                    slot_name(&name)
                ),
            );
        }
        let host = n.host.as_ref().map_or("127.0.0.1", |h| h.get_ref()).to_string();
        let port = *n.port.get_ref();
        if !(1..=65535).contains(&port) {
            p.push(&n.port, format!("port {port} is not a TCP port (1-65535)"));
        } else if (32768..=60999).contains(&port) {
            p.push(&n.port, format!("port {port} is in Linux's ephemeral range 32768-60999, where outgoing connections can take it; pick a port below 32768"));
        }
        if let Some(other) = addrs.insert((host.clone(), port), name.clone()) {
            p.push(
                &n.port,
                format!(
                    "node `{name}` uses {host}:{port}, which node `{other}` already uses; give each node its own port"
                ),
            );
        }
        let data_dir = match &n.data_dir {
            Some(d) => resolve(base, d.get_ref()),
            None => data_root.join(&name),
        };
        // A duplicate name already explains a clash of default data dirs.
        let clash = dirs.insert(data_dir.clone(), name.clone()).filter(|_| !(duplicate && n.data_dir.is_none()));
        if let Some(other) = clash {
            let at = n.data_dir.as_ref().map_or_else(|| n.name.span(), |d| d.span());
            p.list.push(format!(
                "{}: node `{name}` uses data dir {}, which node `{other}` already uses; give each node its own data_dir",
                p.loc.at(at),
                data_dir.display()
            ));
        }
        let api_port = match &n.api_port {
            Some(a) if (1..32768).contains(a.get_ref()) => *a.get_ref() as u16,
            Some(a) => {
                p.push(a, format!("api_port {} must be between 1 and 32767", a.get_ref()));
                0
            }
            None if (1..=22767).contains(&port) => port as u16 + 10000,
            None => {
                p.push(&n.port, format!("node `{name}` needs an api_port: the default (port + 10000 = {}) would be in the ephemeral range; set api_port below 32768", port + 10000));
                0
            }
        };
        if api_port != 0 {
            api_ports.push((
                api_port,
                name.clone(),
                n.api_port.as_ref().map_or_else(|| n.name.span(), |a| a.span()),
                n.api_port.is_some(),
                host.clone(),
            ));
        }
        let role = match &n.role {
            None => None,
            Some(r) => match r.get_ref().as_str() {
                "primary" => Some(Role::Primary),
                "replica" | "standby" => Some(Role::Replica),
                other => {
                    p.push(r, format!("role `{other}` is not `primary` or `replica`"));
                    None
                }
            },
        };
        if role == Some(Role::Primary) {
            primaries.push(n);
        }
        out.push((
            Node {
                name,
                host,
                port: port.clamp(0, 65535) as u16,
                bootstrap_role: Role::Replica,
                data_dir,
                line,
                api_port,
                failover_priority: match &n.failover_priority {
                    None => 1,
                    Some(v) if (0..=1000).contains(v.get_ref()) => *v.get_ref() as u32,
                    Some(v) => {
                        p.push(
                            v,
                            format!("failover_priority {} must be between 0 (never promoted) and 1000", v.get_ref()),
                        );
                        1
                    }
                },
            },
            role,
        ));
    }
    let node_ports: Vec<(i64, &String, &str)> = raw
        .node
        .iter()
        .zip(&out)
        .map(|(n, (node, _))| (*n.port.get_ref(), n.name.get_ref(), node.host.as_str()))
        .collect();
    for (i, (port, name, span, explicit, host)) in api_ports.iter().enumerate() {
        // Two default api ports clash only when the node ports do, which is reported already.
        let earlier =
            api_ports[..i].iter().filter(|a| *explicit || a.3).map(|(p, n, _, _, h)| (*p as i64, n, h.as_str()));
        let clash = earlier
            .chain(node_ports.iter().map(|(p, n, h)| (*p, *n, *h)))
            .find(|(p, _, h)| *p == *port as i64 && h == host);
        if let Some((_, other, _)) = clash {
            p.list.push(format!(
                "{}: node `{name}`'s api_port {port} is already used by node `{other}`; set api_port to a free port",
                p.loc.at(span.clone())
            ));
        }
    }
    match primaries.len() {
        1 => {}
        0 if out[0].1.is_none() => out[0].1 = Some(Role::Primary),
        0 => p.push(
            &raw.node[0].name,
            "no node has role = \"primary\"; mark exactly one node as primary (or leave the first node's role unset)",
        ),
        _ => {
            for n in &primaries[1..] {
                let first = p.loc.line_col(primaries[0].name.span().start).0;
                p.push(n.role.as_ref().unwrap_or(&n.name), format!("node `{}` is a second primary (node `{}` at line {first} is one already); exactly one node is bootstrapped as primary", n.name.get_ref(), primaries[0].name.get_ref()));
            }
        }
    }
    out.into_iter()
        .map(|(mut n, r)| {
            n.bootstrap_role = r.unwrap_or(Role::Replica);
            n
        })
        .collect()
}

fn databases(raw: &[file::Database], base: &Path, p: &mut Problems) -> Vec<Database> {
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut out = Vec::new();
    for d in raw {
        let name = d.name.get_ref().clone();
        if !is_identifier(&name) {
            p.push(&d.name, "database name must be letters, digits, `-` or `_`, not starting with a digit");
        }
        if seen.insert(name.clone(), ()).is_some() {
            p.push(&d.name, format!("database `{name}` is listed twice"));
        }
        let owner = d.owner.as_ref().map(|o| o.get_ref().clone()).unwrap_or_default();
        if let Some(o) = &d.owner {
            if !is_identifier(o.get_ref()) {
                p.push(o, "owner must be letters, digits, `-` or `_`, not starting with a digit");
            }
        }
        let owner_password = d.owner_password_file.as_ref().and_then(|f| {
            if d.owner.is_none() {
                p.push(f, "owner_password_file needs an owner");
            }
            read_secret_file(base, f, "owner password", p)
        });
        let mut schema = Vec::new();
        for s in &d.schema {
            let path = resolve(base, s.get_ref());
            if !path.is_file() {
                p.push(
                    s,
                    format!(
                        "schema file {} does not exist; fix the path (it is relative to the config file)",
                        path.display()
                    ),
                );
            }
            schema.push(path);
        }
        out.push(Database { name, owner, owner_password, schema });
    }
    out
}

fn roles(raw: &[file::RoleDecl], base: &Path, p: &mut Problems) -> Vec<super::RoleSpec> {
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut out = Vec::new();
    for r in raw {
        let name = r.name.get_ref().clone();
        if !is_identifier(&name) {
            p.push(&r.name, "role name must be letters, digits, `-` or `_`, not starting with a digit");
        }
        if name.starts_with("pg_") {
            p.push(&r.name, "role names starting with `pg_` are PostgreSQL's own; pick another name");
        }
        if seen.insert(name.clone(), ()).is_some() {
            p.push(&r.name, format!("role `{name}` is declared twice"));
        }
        for m in &r.in_roles {
            if !is_identifier(m.get_ref()) {
                p.push(m, "in_roles entries must be role names: letters, digits, `-` or `_`");
            }
        }
        out.push(super::RoleSpec {
            password: r.password_file.as_ref().and_then(|f| read_secret_file(base, f, "role password", p)),
            login: r.login.unwrap_or(true),
            in_roles: r.in_roles.iter().map(|m| (m.get_ref().clone(), p.loc.at(m.span()))).collect(),
            at: p.loc.at(r.name.span()),
            name,
        });
    }
    out
}

fn hba(raw: &[Spanned<file::Hba>], p: &mut Problems) -> Vec<HbaRule> {
    const METHODS: &[&str] = &[
        "trust",
        "reject",
        "scram-sha-256",
        "md5",
        "password",
        "peer",
        "ident",
        "cert",
        "ldap",
        "radius",
        "pam",
        "gss",
        "sspi",
        "bsd",
    ];
    let mut out = Vec::new();
    for h in raw {
        let r = h.get_ref();
        match r.kind.as_str() {
            "local" if r.address.is_some() => p.push(h, "a `local` hba rule takes no address"),
            "local" => {}
            "host" | "hostssl" | "hostnossl" | "hostgssenc" | "hostnogssenc" if r.address.is_none() => {
                p.push(h, format!("a `{}` hba rule needs an address, such as \"127.0.0.1/32\"", r.kind))
            }
            "host" | "hostssl" | "hostnossl" | "hostgssenc" | "hostnogssenc" => {}
            other => p.push(h, format!("hba type `{other}` is not local, host, hostssl or hostnossl")),
        }
        if !METHODS.contains(&r.method.as_str()) {
            p.push(h, format!("hba method `{}` is not one PostgreSQL knows (use scram-sha-256)", r.method));
        }
        if r.method == "trust" {
            p.warnings.push(format!(
                "{}: hba rule uses `trust`: anyone matching it connects without a password",
                p.loc.at(h.span())
            ));
        }
        let fields = [&r.database, &r.user].into_iter().chain(r.address.as_ref());
        for f in fields {
            if f.is_empty() || f.chars().any(|c| c.is_whitespace() || c == '#') {
                p.push(h, format!("hba field `{f}` must be one word without spaces or `#`"));
            }
        }
        out.push(HbaRule {
            kind: r.kind.clone(),
            database: r.database.clone(),
            user: r.user.clone(),
            address: r.address.clone(),
            method: r.method.clone(),
        });
    }
    out
}

/// Settings pgrepl derives per node; a cluster-wide value would break them.
const RESERVED: &[&str] = &[
    "port",
    "unix_socket_directories",
    "primary_conninfo",
    "primary_slot_name",
    "cluster_name",
    "hba_file",
    "ident_file",
    "data_directory",
];

/// Render user settings as GUC literals; names must look like GUCs.
fn postgresql(raw: &BTreeMap<String, Spanned<toml::Value>>, p: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            p.push(v, format!("`{k}` is not a PostgreSQL setting name"));
            continue;
        }
        if RESERVED.contains(&k.as_str()) {
            p.push(
                v,
                format!(
                    "`{k}` is managed by pgrepl per node; set it in [[node]] or [replication] instead of [postgresql]"
                ),
            );
            continue;
        }
        let lit = match v.get_ref() {
            toml::Value::String(s) => crate::domain::guc::quote(s),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
            _ => {
                p.push(v, format!("setting `{k}` must be a string, number or boolean"));
                continue;
            }
        };
        out.insert(k.clone(), lit);
    }
    out
}
