//! The crate's one error type. Each variant is a distinct failure a user can
//! act on, and maps to a distinct process exit code (see [`Error::exit_code`]).
//! Only `main` prints an error; everything below returns one.

use std::path::PathBuf;

/// Every failure pgrepl reports. The `Display` text names the problem, where
/// it is, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is missing, unparsable, or fails validation. Each
    /// problem is already formatted as `file:line:col: message`.
    #[error("invalid configuration:\n{}", .problems.join("\n"))]
    Config { problems: Vec<String> },

    /// No usable PostgreSQL installation.
    #[error("{0}")]
    BinariesNotFound(String),

    /// A node's port is held by a process that is not ours.
    #[error("port {port} on {host} (node {node}) is already in use by another process; pgrepl leaves that process alone. Stop it, or give node {node} another port in {config}")]
    PortInUse { node: String, host: String, port: u16, config: String },

    /// A data directory that pgrepl must not touch.
    #[error("{0}")]
    UnsafeDataDir(String),

    /// The OS user that runs PostgreSQL cannot reach a path.
    #[error("{0}")]
    Permission(String),

    /// The primary could not be reached before the deadline.
    #[error("{0}")]
    PrimaryUnreachable(String),

    /// The server rejected our credentials.
    #[error("{0}")]
    Authentication(String),

    /// A PostgreSQL program exited unsuccessfully.
    #[error("{program} failed ({status}){}", stderr_suffix(.stderr))]
    Subprocess { program: String, status: String, stderr: String },

    /// Something did not become ready before its deadline.
    #[error("{0}")]
    Timeout(String),

    /// The requested action needs something that is not there (for example,
    /// a node name that the config does not define).
    #[error("{0}")]
    Usage(String),

    /// A SQL statement failed.
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// An I/O error, with the path it happened on.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A move (switchover, failover, rejoin) was refused before anything
    /// changed, or rolled back; the text says why and what to do.
    #[error("{0}")]
    Refused(String),

    /// A child pgrepl already reported its error; exit with its code.
    #[error("exit status {0}")]
    Exit(i32),

    /// Anything else: a bug or an unexpected environment.
    #[error("{0}")]
    Other(String),
}

fn stderr_suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(":\n{t}")
    }
}

impl Error {
    /// The process exit code. Each class of failure has its own, so scripts can
    /// branch on it. Documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Other(_) | Error::Io { .. } | Error::Sql { .. } => 1,
            Error::Config { .. } => 2,
            Error::BinariesNotFound(_) => 3,
            Error::PortInUse { .. } => 4,
            Error::UnsafeDataDir(_) => 5,
            Error::Permission(_) => 6,
            Error::PrimaryUnreachable(_) => 7,
            Error::Authentication(_) => 8,
            Error::Subprocess { .. } => 9,
            Error::Timeout(_) => 10,
            Error::Refused(_) => 11,
            Error::Usage(_) => 64,
            Error::Exit(code) => *code,
        }
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Wrap a SQL error with what we were doing.
    pub fn sql(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Sql { context: context.into(), source }
    }
}

/// Crate-wide result alias.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
