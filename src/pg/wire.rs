//! A small, blocking client for PostgreSQL's physical replication protocol
//! (a `replication=true` connection). tokio-postgres cannot open one, so
//! this speaks the wire format with `postgres-protocol`'s codecs: startup,
//! SCRAM-SHA-256 / MD5 / cleartext authentication, and simple queries whose
//! responses the caller reads message by message (BASE_BACKUP streams COPY
//! data between ordinary result sets).
//!
//! Blocking on purpose: the one user (the built-in base backup) writes files
//! as fast as data arrives, and runs on its own thread.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;

/// Why a replication connection or command failed.
#[derive(Debug)]
pub(crate) enum WireError {
    /// No connection could be made (refused, unreachable, timed out).
    Connect(String),
    /// The server answered with an error.
    Server { severity: String, code: String, message: String },
    /// Anything else: an I/O error mid-stream or a message we did not expect.
    Protocol(String),
}

impl WireError {
    /// The server is running but not accepting connections yet (or any more).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            WireError::Connect(_) => true,
            // 57P03: cannot_connect_now (starting up, shutting down, in recovery).
            WireError::Server { code, .. } => code == "57P03",
            WireError::Protocol(_) => false,
        }
    }

    /// The server rejected who we are: wrong password or no pg_hba entry.
    pub(crate) fn is_auth(&self) -> bool {
        // 28P01: invalid_password; 28000: invalid_authorization_specification.
        matches!(self, WireError::Server { code, .. } if code == "28P01" || code == "28000")
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Connect(s) | WireError::Protocol(s) => f.write_str(s),
            WireError::Server { severity, code, message } => write!(f, "{severity}: {message} (SQLSTATE {code})"),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Protocol(format!("replication connection: {e}"))
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Where and as whom to open a replication connection: the one
/// connection-target type, for base backups (both methods) and the seed's
/// login check. Owned, so it can go to the thread a blocking copy runs on.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// A host name or address, or a socket directory (starts with '/').
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: crate::config::Secret,
    /// Shown in the primary's pg_stat_activity and pg_stat_replication.
    pub application_name: String,
    /// `[tls]`: TCP connections must be encrypted (sockets never are).
    pub tls: Option<crate::pg::tls::Tls>,
    /// libpq's `options` (settings for the server's side of this
    /// connection), e.g. a base backup's own `wal_sender_timeout`.
    pub options: Option<String>,
}

/// An open, authenticated replication connection.
pub(crate) struct ReplConn {
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    /// The server's major version (from its `server_version` parameter).
    pub server_major: u32,
}

impl ReplConn {
    /// Connect and authenticate. `connect_timeout` bounds the TCP connect.
    /// Reads have no timeout, since a primary may rightly say nothing for
    /// minutes (a fast checkpoint of large shared_buffers before a base
    /// backup); TCP keepalives find a peer that is gone instead.
    pub(crate) fn connect(t: &Target, connect_timeout: Duration) -> Result<ReplConn, WireError> {
        let where_ = format!("{}:{}", t.host, t.port);
        let stream: Box<dyn Stream> = if t.host.starts_with('/') {
            let path = format!("{}/.s.PGSQL.{}", t.host, t.port);
            let s = UnixStream::connect(&path).map_err(|e| WireError::Connect(format!("connecting to {path}: {e}")))?;
            Box::new(s)
        } else {
            let addrs: Vec<_> = (t.host.as_str(), t.port)
                .to_socket_addrs()
                .map_err(|e| WireError::Connect(format!("could not translate host name {}: {e}", t.host)))?
                .collect();
            let mut last = None;
            let mut found = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, connect_timeout) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let s = found.ok_or_else(|| {
                WireError::Connect(format!(
                    "could not connect to {where_}: {}",
                    last.map_or("no address".to_string(), |e| e.to_string())
                ))
            })?;
            s.set_nodelay(true)?;
            keepalive(&s)?;
            match &t.tls {
                Some(tls) => Box::new(start_tls(s, &t.host, tls)?),
                None => Box::new(s),
            }
        };
        let mut c = ReplConn { stream, rbuf: BytesMut::with_capacity(64 * 1024), server_major: 0 };
        c.startup(t)?;
        Ok(c)
    }

    fn startup(&mut self, t: &Target) -> Result<(), WireError> {
        let mut buf = BytesMut::new();
        let mut params = vec![
            ("user", t.user.as_str()),
            ("database", "replication"),
            ("replication", "true"),
            ("application_name", t.application_name.as_str()),
        ];
        if let Some(o) = &t.options {
            params.push(("options", o.as_str()));
        }
        frontend::startup_message(params.iter().copied(), &mut buf)?;
        self.send(&buf)?;
        loop {
            match self.recv()? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let mut b = BytesMut::new();
                    frontend::password_message(t.password.expose().as_bytes(), &mut b)?;
                    self.send(&b)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        t.user.as_bytes(),
                        t.password.expose().as_bytes(),
                        body.salt(),
                    );
                    let mut b = BytesMut::new();
                    frontend::password_message(hash.as_bytes(), &mut b)?;
                    self.send(&b)?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechs = body.mechanisms();
                    let mut scram = false;
                    while let Some(m) = mechs.next()? {
                        scram |= m == SCRAM_SHA_256;
                    }
                    if !scram {
                        return Err(WireError::Protocol("the server offered no SASL mechanism pgrepl knows".into()));
                    }
                    self.scram(t.password.expose())?;
                }
                Message::ParameterStatus(p) => {
                    if p.name()? == "server_version" {
                        let v = p.value()?;
                        self.server_major = super::bin::parse_version(v).map_or(0, |(m, _)| m);
                    }
                }
                Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ReadyForQuery(_) => return Ok(()),
                _ => return Err(WireError::Protocol("unexpected message during startup".into())),
            }
        }
    }

    fn scram(&mut self, password: &str) -> Result<(), WireError> {
        let mut s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut b = BytesMut::new();
        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut b)?;
        self.send(&b)?;
        match self.recv()? {
            Message::AuthenticationSaslContinue(body) => s.update(body.data())?,
            _ => return Err(WireError::Protocol("SCRAM: expected the server's first message".into())),
        }
        let mut b = BytesMut::new();
        frontend::sasl_response(s.message(), &mut b)?;
        self.send(&b)?;
        match self.recv()? {
            Message::AuthenticationSaslFinal(body) => s.finish(body.data())?,
            _ => return Err(WireError::Protocol("SCRAM: expected the server's final message".into())),
        }
        Ok(())
    }

    fn send(&mut self, buf: &[u8]) -> Result<(), WireError> {
        self.stream.write_all(buf)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Send a simple query; read its response with [`ReplConn::recv`].
    pub(crate) fn query(&mut self, sql: &str) -> Result<(), WireError> {
        let mut b = BytesMut::new();
        frontend::query(sql, &mut b)?;
        self.send(&b)
    }

    /// Run a command whose result is at most one small result set, and return
    /// its rows as text (NULL as `None`).
    pub(crate) fn simple(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WireError> {
        self.query(sql)?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.recv() {
                Ok(Message::DataRow(r)) => rows.push(row_text(&r)?),
                Ok(Message::ReadyForQuery(_)) => break,
                Ok(_) => {}
                // The server still sends ReadyForQuery after an error.
                Err(e @ WireError::Server { .. }) => failed = Some(e),
                Err(e) => return Err(e),
            }
        }
        failed.map_or(Ok(rows), Err)
    }

    /// The next backend message. An ErrorResponse becomes `Err(Server)`.
    pub(crate) fn recv(&mut self) -> Result<Message, WireError> {
        loop {
            if let Some(m) = Message::parse(&mut self.rbuf)? {
                return match m {
                    Message::ErrorResponse(body) => Err(server_error(&body)),
                    m => Ok(m),
                };
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(WireError::Protocol("the server closed the connection".into()));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Ask the server for TLS (SSLRequest) and shake hands, checking its
/// certificate as `[tls] sslmode` says.
fn start_tls(
    mut s: TcpStream,
    host: &str,
    tls: &crate::pg::tls::Tls,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, WireError> {
    let mut b = BytesMut::new();
    frontend::ssl_request(&mut b);
    s.write_all(&b)?;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer)?;
    if answer[0] != b'S' {
        return Err(WireError::Protocol(format!(
            "the server at {host} does not accept TLS connections, but [tls] requires them; check that the node runs with ssl = on"
        )));
    }
    let fail = |e: String| {
        WireError::Protocol(format!(
            "TLS handshake with {host} failed (sslmode {}): {e}. Check that [tls] ca_file holds the CA that signed cert_file{}",
            tls.sslmode.as_str(),
            if crate::pg::tls::check_hostname(tls) { format!(", and that the certificate names {host}") } else { String::new() }
        ))
    };
    let config = crate::pg::tls::client_config(tls).map_err(|e| WireError::Protocol(e.to_string()))?;
    let name = crate::pg::tls::server_name(host).map_err(fail)?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| fail(e.to_string()))?;
    // The handshake now, so its failure is reported as one.
    while conn.is_handshaking() {
        conn.complete_io(&mut s).map_err(|e| fail(e.to_string()))?;
    }
    Ok(rustls::StreamOwned::new(conn, s))
}

/// Probe an idle connection after 10 s, every 5 s, and give up after 3
/// unanswered probes: a vanished primary is noticed in about 25 s.
fn keepalive(s: &TcpStream) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let set = |r: nix::Result<()>| r.map_err(io::Error::from);
    set(setsockopt(s, sockopt::KeepAlive, &true))?;
    set(setsockopt(s, sockopt::TcpKeepIdle, &10))?;
    set(setsockopt(s, sockopt::TcpKeepInterval, &5))?;
    set(setsockopt(s, sockopt::TcpKeepCount, &3))
}

impl Drop for ReplConn {
    fn drop(&mut self) {
        let mut b = BytesMut::new();
        frontend::terminate(&mut b);
        let _ = self.stream.write_all(&b);
    }
}

/// A DataRow's columns as text.
pub(crate) fn row_text(r: &postgres_protocol::message::backend::DataRowBody) -> Result<Vec<Option<String>>, WireError> {
    let mut out = Vec::new();
    let mut ranges = r.ranges();
    while let Some(range) = ranges.next()? {
        out.push(range.map(|rg| String::from_utf8_lossy(&r.buffer()[rg]).into_owned()));
    }
    Ok(out)
}

fn server_error(body: &ErrorResponseBody) -> WireError {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'S' => severity = v,
            b'C' => code = v,
            b'M' => message = v,
            _ => {}
        }
    }
    WireError::Server { severity, code, message }
}

/// Quote an identifier for a replication command.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote a string literal for a replication command.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted() {
        let e = |code: &str| WireError::Server { severity: "FATAL".into(), code: code.into(), message: "m".into() };
        assert!(e("28P01").is_auth() && !e("28P01").is_transient());
        assert!(e("28000").is_auth());
        assert!(e("57P03").is_transient() && !e("57P03").is_auth());
        assert!(WireError::Connect("refused".into()).is_transient());
        assert!(!e("42601").is_transient() && !e("42601").is_auth());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
