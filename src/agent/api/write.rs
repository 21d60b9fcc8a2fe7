//! The write endpoints (POST): switchover, failover, restart, reload,
//! pause and resume, for automation (Ansible, chat bots) as Patroni's REST
//! API is used. Each runs the very function the CLI command runs
//! ([`crate::ops::entry`]), with its lines captured for the answer.
//!
//! Who may write: nobody without `[api] token_file` (403, naming the
//! setting); with it, a request with `Authorization: Bearer <token>`, or
//! one over TLS with a client certificate signed by the cluster's CA.
//! Parsing and authorisation are pure and refuse before anything runs.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::health::Answer;
use crate::config::{Config, WriteAccess};
use crate::domain::units::{parse_duration, ByteSize};
use crate::error::Error;
use crate::ops::moves::{failover, switchover};
use crate::output::Output;
use crate::store::ctx::Ctx;

/// Why a write is refused before it is read.
#[derive(Debug, PartialEq)]
pub(super) enum Denied {
    /// The write endpoints are off (403), and why.
    Off(String),
    /// No credentials, or wrong ones (401).
    Unauthorized(&'static str),
}

impl Denied {
    /// For the log: never the credentials, only what was wrong.
    pub(super) fn reason(&self) -> &str {
        match self {
            Denied::Off(why) => why,
            Denied::Unauthorized(why) => why,
        }
    }

    pub(super) fn answer(&self) -> Answer {
        match self {
            Denied::Off(why) => Answer::json(403, json!({"ok": false, "error": why})),
            Denied::Unauthorized(why) => Answer::json(401, json!({"ok": false, "error": why})),
        }
    }
}

/// May this request write? `authorization`: its header; `client_cert`: it
/// came over TLS with a certificate the cluster's CA signed.
pub(super) fn authorize(access: &WriteAccess, authorization: Option<&[u8]>, client_cert: bool) -> Result<(), Denied> {
    let token = match access {
        WriteAccess::Off => {
            return Err(Denied::Off(
                "the write endpoints are off: set [api] token_file (a 0600 file holding a token) in pgrepl.toml and restart pgrepl".into(),
            ))
        }
        WriteAccess::Refused(why) => return Err(Denied::Off(why.clone())),
        WriteAccess::Token(t) => t,
    };
    if client_cert {
        return Ok(());
    }
    let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
        return Err(Denied::Unauthorized("send `Authorization: Bearer <token>` (the token in [api] token_file)"));
    };
    // Compare digests in constant time, so neither the content nor the
    // length of the token leaks through timing.
    let sha = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    let (a, b) = (sha(given), sha(token.expose().as_bytes()));
    // Every byte is looked at, whatever the first difference.
    let differ = a.as_ref().iter().zip(b.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if std::hint::black_box(differ) == 0 {
        Ok(())
    } else {
        Err(Denied::Unauthorized("wrong token"))
    }
}

/// A checked request: what to run.
#[derive(Debug, PartialEq)]
pub(super) enum Job {
    /// `from`: Patroni's `leader`, the primary the caller expects to move away from.
    Switchover {
        o: switchover::Options,
        from: Option<String>,
    },
    Failover(failover::Options),
    Restart(Vec<String>),
    Reload {
        dry_run: bool,
    },
    Pause(Option<String>),
    Resume,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    #[serde(alias = "candidate")]
    to: Option<String>,
    #[serde(alias = "leader")]
    from: Option<String>,
    max_lag: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverBody {
    #[serde(alias = "candidate")]
    to: Option<String>,
    #[serde(default)]
    stop_primary: bool,
    #[serde(default)]
    allow_data_loss: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    nodes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoBody {}

/// Read a JSON body (empty is `{}`), saying what was wrong with it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], fields: &str) -> Result<T, String> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| format!("cannot read the JSON body: {e}; this endpoint takes {fields}"))
}

/// Every named node must exist.
fn known(cfg: &Config, names: &[&String]) -> Result<(), String> {
    names.iter().try_for_each(|n| cfg.node(n).map(|_| ()).map_err(|e| e.to_string()))
}

/// Parse `POST path` with `bytes` into a [`Job`], or say why not (a 400).
/// Pure: the config is only read. `this_node`: the node whose API port was
/// called, which `/restart` restarts unless told otherwise (as Patroni's does).
pub(super) fn parse(path: &str, bytes: &[u8], cfg: &Config, this_node: &str) -> Result<Job, String> {
    match path {
        "/switchover" => {
            let b: SwitchoverBody = body(bytes, r#"{"to": NODE, "from": NODE, "max_lag": "1MB", "timeout": "60s"}"#)?;
            known(cfg, &b.to.iter().chain(&b.from).collect::<Vec<_>>())?;
            let max_lag = ByteSize::parse(b.max_lag.as_deref().unwrap_or(switchover::DEFAULT_MAX_LAG))
                .map_err(|e| format!("max_lag: {e}"))?;
            let timeout = parse_duration(b.timeout.as_deref().unwrap_or(switchover::DEFAULT_TIMEOUT))
                .map_err(|e| format!("timeout: {e}"))?;
            Ok(Job::Switchover { o: switchover::Options { to: b.to, max_lag, timeout }, from: b.from })
        }
        "/failover" => {
            let b: FailoverBody = body(bytes, r#"{"to": NODE, "stop_primary": false, "allow_data_loss": false}"#)?;
            known(cfg, &b.to.iter().collect::<Vec<_>>())?;
            Ok(Job::Failover(failover::Options {
                to: b.to,
                stop_primary: b.stop_primary,
                allow_data_loss: b.allow_data_loss,
            }))
        }
        "/restart" => {
            let b: RestartBody = body(bytes, r#"{"nodes": [NODE, ...]} (default: this node)"#)?;
            let nodes = b.nodes.unwrap_or_else(|| vec![this_node.to_string()]);
            known(cfg, &nodes.iter().collect::<Vec<_>>())?;
            Ok(Job::Restart(nodes))
        }
        "/reload" => Ok(Job::Reload { dry_run: body::<ReloadBody>(bytes, r#"{"dry_run": false}"#)?.dry_run }),
        "/pause" => Ok(Job::Pause(body::<PauseBody>(bytes, r#"{"reason": TEXT}"#)?.reason)),
        "/resume" => body::<NoBody>(bytes, "no fields").map(|_| Job::Resume),
        _ => Err(format!(
            "no write endpoint {path}; there are POST /switchover, /failover, /restart, /reload, /pause and /resume"
        )),
    }
}

/// The HTTP status for a failed job: the caller's mistake, a refusal
/// (nothing changed), a deadline, or a failure on our side.
fn status_of(e: &Error) -> u16 {
    match e {
        Error::Usage(_) | Error::Config { .. } => 400,
        Error::Refused(_) => 409,
        Error::Timeout(_) => 504,
        _ => 500,
    }
}

/// Run a job as the CLI would, and answer with its outcome and every line
/// it printed. It runs in a task of its own: a client that hangs up must
/// not cancel a switchover halfway.
pub(super) async fn run(ctx: Arc<Ctx>, job: Job) -> Answer {
    let (out, lines) = Output::capturing();
    let work = tokio::spawn(async move {
        match job {
            Job::Switchover { o, from } => {
                if let Some(from) = from {
                    let primary = crate::store::view::ClusterView::read(&ctx)?.primary.name;
                    if primary != from {
                        return Err(Error::Usage(format!("{from} is not the primary, {primary} is; nothing changed")));
                    }
                }
                crate::ops::entry::switchover(&ctx, &o, &out).await
            }
            Job::Failover(o) => crate::ops::entry::failover(&ctx, &o, &out).await,
            Job::Restart(nodes) => crate::ops::entry::restart(&ctx, &nodes, &out).await,
            Job::Reload { dry_run } => {
                // Like the command, read the file as it is now: the agent's
                // own copy is the one it started with.
                let fresh = crate::store::ctx::Ctx::with_config(&ctx, crate::config::load(&ctx.cfg.path)?)?;
                crate::ops::entry::reload(&fresh, dry_run, &out).await
            }
            Job::Pause(reason) => crate::agent::ha::pause::pause(&ctx, reason.as_deref(), &out).await,
            Job::Resume => crate::agent::ha::pause::resume(&ctx, &out).await,
        }
    });
    let result = work.await.unwrap_or_else(|e| Err(Error::Other(format!("the request's task failed: {e}"))));
    let steps = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match result {
        Ok(()) => Answer::json(200, json!({"ok": true, "steps": steps})),
        Err(e) => Answer::json(
            status_of(&e),
            json!({"ok": false, "error": e.to_string(), "exit_code": e.exit_code(), "steps": steps}),
        ),
    }
}

/// How long a request may take to send its body.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn token() -> WriteAccess {
        WriteAccess::Token(Secret::new("s3cret-token-0123456789abcdef0123".into()))
    }

    #[test]
    fn writes_need_a_token_file_and_the_token() {
        assert!(
            matches!(authorize(&WriteAccess::Off, None, false), Err(Denied::Off(w)) if w.contains("[api] token_file"))
        );
        let refused = WriteAccess::Refused("mode 644".into());
        assert_eq!(authorize(&refused, Some(b"Bearer x"), true), Err(Denied::Off("mode 644".into())));
        assert!(matches!(authorize(&token(), None, false), Err(Denied::Unauthorized(_))));
        assert_eq!(authorize(&token(), Some(b"Bearer nope"), false), Err(Denied::Unauthorized("wrong token")));
        assert_eq!(authorize(&token(), Some(b"Basic czNjcmV0"), false).map_err(|_| ()), Err(()));
        assert_eq!(authorize(&token(), Some(b"Bearer s3cret-token-0123456789abcdef0123"), false), Ok(()));
        assert_eq!(authorize(&token(), None, true), Ok(()), "a client certificate from the CA will do");
    }

    fn cfg() -> Config {
        let nodes: String = (1..=3).map(|i| format!("[[node]]\nname = \"pg-{i}\"\nport = {}\n", 15431 + i)).collect();
        let toml = format!("[cluster]\nname = \"c\"\n[replication]\npassword = \"x\"\n{nodes}");
        crate::config::parse(std::path::Path::new("/tmp/pgrepl.toml"), &toml).unwrap()
    }

    #[test]
    fn bodies_parse_with_the_cli_defaults() {
        let c = cfg();
        let j = parse("/switchover", br#"{"to": "pg-2"}"#, &c, "pg-1").unwrap();
        let Job::Switchover { o, from: None } = j else { panic!("{j:?}") };
        assert_eq!((o.to.as_deref(), o.max_lag, o.timeout), (Some("pg-2"), ByteSize(1 << 20), Duration::from_secs(60)));
        let j = parse("/switchover", br#"{"leader": "pg-1", "candidate": "pg-3", "max_lag": "16MB"}"#, &c, "pg-1");
        assert!(
            matches!(j, Ok(Job::Switchover { from: Some(f), o }) if f == "pg-1" && o.max_lag == ByteSize(16 << 20))
        );
        assert_eq!(parse("/restart", b"", &c, "pg-2"), Ok(Job::Restart(vec!["pg-2".into()])));
        assert_eq!(parse("/reload", b"  ", &c, "pg-2"), Ok(Job::Reload { dry_run: false }));
        assert_eq!(parse("/pause", br#"{"reason": "upgrade"}"#, &c, "pg-2"), Ok(Job::Pause(Some("upgrade".into()))));
        assert_eq!(parse("/resume", b"{}", &c, "pg-2"), Ok(Job::Resume));
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        let c = cfg();
        let e = parse("/switchover", b"{\"to\": ", &c, "pg-1").unwrap_err();
        assert!(e.contains("cannot read the JSON body") && e.contains(r#""to": NODE"#), "{e}");
        let e = parse("/switchover", br#"{"to": "pg-2", "force": true}"#, &c, "pg-1").unwrap_err();
        assert!(e.contains("unknown field `force`"), "{e}");
        let e = parse("/switchover", br#"{"to": "pg-9"}"#, &c, "pg-1").unwrap_err();
        assert!(e.contains("no node named `pg-9`"), "{e}");
        let e = parse("/switchover", br#"{"max_lag": "lots"}"#, &c, "pg-1").unwrap_err();
        assert!(e.starts_with("max_lag: "), "{e}");
        let e = parse("/restart", br#"{"nodes": ["pg-1", "nope"]}"#, &c, "pg-1").unwrap_err();
        assert!(e.contains("no node named `nope`"), "{e}");
        assert!(parse("/resume", br#"{"now": 1}"#, &c, "pg-1").is_err());
        assert!(parse("/promote", b"", &c, "pg-1").unwrap_err().contains("no write endpoint /promote"));
    }
}
