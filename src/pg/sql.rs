//! SQL over tokio-postgres: connecting to a node (socket as superuser, or
//! TCP with a password), and the bootstrap statements. Passwords are sent
//! only as SCRAM verifiers computed here, so no statement or server log
//! ever holds a clear-text password.

use std::path::Path;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::config::Secret;
use crate::error::{Error, Result};

/// Connect over the node's Unix socket as the superuser (peer auth).
pub(crate) async fn connect_socket(
    socket_dir: &Path,
    port: u16,
    user: &str,
    dbname: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut c = base_config(port, user, dbname);
    c.host_path(socket_dir);
    connect(c, NoTls).await
}

/// Connect over TCP with a password (for nodes on other hosts), over TLS
/// when `[tls]` is set (then required: the nodes refuse plain TCP).
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    user: &str,
    password: &Secret,
    dbname: &str,
    tls: Option<crate::pg::tls::MakeTls>,
) -> Result<Client, tokio_postgres::Error> {
    let mut c = base_config(port, user, dbname);
    c.host(host).password(password.expose());
    match tls {
        Some(t) => {
            c.ssl_mode(tokio_postgres::config::SslMode::Require);
            connect(c, t).await
        }
        None => connect(c, NoTls).await,
    }
}

fn base_config(port: u16, user: &str, dbname: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.port(port).user(user).dbname(dbname).application_name("pgrepl").connect_timeout(Duration::from_secs(5));
    // pgrepl's own sessions never wait for a synchronous standby: its
    // bootstrap SQL runs before the standbys start (a sync list left in
    // postgresql.auto.conf would deadlock `up`), and a move must not hang
    // on the standby it is about to change. Users' sessions keep their setting.
    c.options("-c synchronous_commit=local");
    c
}

/// Connect and drive the connection on its own task.
async fn connect<T>(c: tokio_postgres::Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = c.connect(tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The two statements that change a primary's `synchronous_standby_names`
/// without a restart: ALTER SYSTEM (refused inside a transaction block, so
/// never batched with the other), then the reload that applies it.
pub(crate) fn set_standby_names(names: &str) -> [String; 2] {
    [format!("ALTER SYSTEM SET synchronous_standby_names = {}", literal(names)), "SELECT pg_reload_conf()".into()]
}

/// Quote an identifier.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote a string literal (standard_conforming_strings is on since 9.1).
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SCRAM-SHA-256 verifier for `password`, as `\password` in psql makes.
pub(crate) fn scram_verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// Create or update a login role, setting its password as a verifier.
pub(crate) async fn ensure_role(client: &Client, name: &str, attrs: &str, password: Option<&Secret>) -> Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .map_err(|e| Error::sql(format!("looking up role {name}"), e))?
        .is_some();
    let statement = |verb: &str| {
        let mut sql = format!("{verb} ROLE {} WITH {attrs}", ident(name));
        if let Some(pw) = password {
            sql.push_str(&format!(" PASSWORD {}", literal(&scram_verifier(pw))));
        }
        sql
    };
    let verb = if exists { "ALTER" } else { "CREATE" };
    match client.batch_execute(&statement(verb)).await {
        Ok(()) => Ok(()),
        // Another session (a bootstrap and the HA loop's leader, say)
        // created it between the look-up and the CREATE: set it as asked.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) && !exists => {
            client.batch_execute(&statement("ALTER")).await.map_err(|e| Error::sql(format!("alter role {name}"), e))
        }
        Err(e) => Err(Error::sql(format!("{} role {name}", verb.to_lowercase()), e)),
    }
}

/// Create a database owned by `owner` unless it exists.
pub(crate) async fn ensure_database(client: &Client, name: &str, owner: &str) -> Result<bool> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| Error::sql(format!("looking up database {name}"), e))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {} OWNER {}", ident(name), ident(owner)))
            .await
            .map_err(|e| Error::sql(format!("creating database {name}"), e))?;
    }
    Ok(!exists)
}

/// Create a physical replication slot unless it exists. The slot reserves
/// WAL from the moment it is made, so a standby that is still being cloned
/// (or has not yet followed a new primary) finds everything it needs.
///
/// Two callers may race (a bootstrap and the HA loop's leader, say): the
/// NOT EXISTS check and the creation are not one step, so "already exists"
/// from the loser means what it asked for is there.
pub(crate) async fn ensure_slot(client: &Client, slot: &str) -> Result<()> {
    let r = client
        .execute(
            "SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => Ok(()),
        Err(e) => Err(Error::sql(format!("creating replication slot {slot}"), e)),
    }
}

/// Apply one schema file as `owner`, in one implicit transaction (the simple
/// query protocol runs a multi-statement string atomically unless the file
/// has its own BEGIN/COMMIT).
pub(crate) async fn apply_schema(client: &Client, owner: &str, file: &Path) -> Result<()> {
    let sql = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    client
        .batch_execute(&format!("SET ROLE {}", ident(owner)))
        .await
        .map_err(|e| Error::sql(format!("switching to role {owner}"), e))?;
    let res = client.batch_execute(&sql).await;
    let _ = client.batch_execute("RESET ROLE").await;
    res.map_err(|e| Error::sql(format!("applying schema file {}", file.display()), e))
}

/// Is there a `streaming` row for `application_name` in pg_stat_replication?
pub(crate) async fn is_streaming(client: &Client, application_name: &str) -> Result<bool> {
    let row = client
        .query_opt(
            "SELECT state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
            &[&application_name],
        )
        .await
        .map_err(|e| Error::sql("reading pg_stat_replication", e))?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("chat"), "\"chat\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn verifier_hides_the_password() {
        let v = scram_verifier(&Secret::new("hunter2".into()));
        assert!(v.starts_with("SCRAM-SHA-256$4096:"));
        assert!(!v.contains("hunter2"));
    }
}
