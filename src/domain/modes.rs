//! The modes a user picks in pgrepl.toml, shared by the config that parses
//! them and the layers that act on them.

/// `[replication] durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    Async,
    Sync,
    SyncStrict,
}

/// `[failover] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    Automatic,
    Manual,
}

/// `[replication] clone_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloneMethod {
    /// pg_basebackup when it can copy this server's major, else built-in.
    #[default]
    Auto,
    PgBasebackup,
    Builtin,
}

impl CloneMethod {
    /// Pick the method for a server of `major`, given the major of the
    /// pg_basebackup there is (if any). pg_basebackup copies servers of its
    /// own major and older ones, never newer.
    pub fn resolve(self, major: u32, pg_basebackup: Option<u32>) -> std::result::Result<CloneMethod, String> {
        let usable = pg_basebackup.is_some_and(|m| m >= major);
        match self {
            CloneMethod::Auto if usable => Ok(CloneMethod::PgBasebackup),
            CloneMethod::Auto | CloneMethod::Builtin => Ok(CloneMethod::Builtin),
            CloneMethod::PgBasebackup if usable => Ok(CloneMethod::PgBasebackup),
            CloneMethod::PgBasebackup => Err(match pg_basebackup {
                Some(m) => format!(
                    "[replication] clone_method = \"pg_basebackup\", but the pg_basebackup found is from PostgreSQL {m}, which cannot copy a PostgreSQL {major} server. Install PostgreSQL {major}'s client programs, or set clone_method = \"auto\""
                ),
                None => format!(
                    "[replication] clone_method = \"pg_basebackup\", but no pg_basebackup is installed. Install PostgreSQL {major}'s client programs, or set clone_method = \"auto\""
                ),
            }),
        }
    }

    /// How the method is named in messages.
    pub fn label(self) -> &'static str {
        match self {
            CloneMethod::Auto => "auto",
            CloneMethod::PgBasebackup => "pg_basebackup",
            CloneMethod::Builtin => "pgrepl's built-in base backup",
        }
    }
}

/// How clients check the nodes' certificate (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Encrypted; the certificate is not checked.
    Require,
    /// Encrypted; the certificate must be signed by the CA.
    VerifyCa,
    /// As verify-ca, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        match s {
            "require" => Some(SslMode::Require),
            "verify-ca" => Some(SslMode::VerifyCa),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the certificate is checked against the CA.
    pub fn verifies(self) -> bool {
        self != SslMode::Require
    }
}
