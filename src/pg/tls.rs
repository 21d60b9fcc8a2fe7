//! TLS between the nodes and everything that reaches them over TCP. With
//! `[tls]`, every node runs with `ssl = on` and the cluster's certificate,
//! pgrepl's own pg_hba lines for TCP become `hostssl` (a connection without
//! TLS is refused), and standbys, clones and pgrepl's own TCP connections
//! use the configured sslmode. One certificate serves every node, so for
//! `verify-full` it must name every node's host (as a DNS or IP SAN).

use std::path::Path;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;

pub(crate) use crate::config::Tls;
pub(crate) use crate::domain::modes::SslMode;
use crate::error::{Error, Result};
use crate::pg::fsutil::write_atomic;
use crate::pg::os_user::RunAs;

/// Where a node keeps its certificate and key: PostgreSQL's default names,
/// relative to the data dir.
pub(crate) const CERT_FILE: &str = "server.crt";
pub(crate) const KEY_FILE: &str = "server.key";

/// postgresql.conf settings for a node (name, value, why).
pub(crate) fn server_settings() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("ssl", "on".into(), "[tls] in pgrepl.toml: TCP connections are encrypted"),
        ("ssl_cert_file", format!("'{CERT_FILE}'"), "the cluster's certificate, copied here by pgrepl"),
        ("ssl_key_file", format!("'{KEY_FILE}'"), "its key, 0600 and owned by the OS user as PostgreSQL requires"),
    ]
}

/// Copy the certificate and key into a node's data dir (0600, owned by
/// the OS user: PostgreSQL refuses a key others can read).
pub(crate) fn write_server_files(tls: &Tls, dir: &Path, runas: &RunAs) -> Result<()> {
    for (name, text) in [(CERT_FILE, tls.cert_pem.as_str()), (KEY_FILE, tls.key_pem.expose())] {
        let p = dir.join(name);
        write_atomic(&p, text.as_bytes(), 0o600)?;
        runas.chown(&p)?;
    }
    Ok(())
}

/// Write the client's copy of the CA (for libpq's `sslrootcert`), if any.
pub(crate) fn write_client_files(tls: &Tls, root_cert: &Path, runas: &RunAs) -> Result<()> {
    if let Some(ca) = &tls.ca_pem {
        write_atomic(root_cert, ca.as_bytes(), 0o600)?;
        runas.chown(root_cert)?;
    }
    Ok(())
}

/// libpq connection parameters: `sslmode`, and `sslrootcert` with a CA.
pub(crate) fn libpq_params(tls: &Tls, root_cert: &Path) -> Vec<(&'static str, String)> {
    let mut v = vec![("sslmode", tls.sslmode.as_str().to_string())];
    if tls.ca_pem.is_some() {
        v.push(("sslrootcert", root_cert.to_string_lossy().into_owned()));
    }
    v
}

/// An OpenSSL connector for pgrepl's own connections, checking the
/// certificate as `sslmode` says. Hostname checks are made per connection
/// (see [`check_hostname`]).
pub(crate) fn connector(tls: &Tls) -> Result<SslConnector> {
    let err = |e: openssl::error::ErrorStack| Error::Other(format!("setting up TLS: {e}"));
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(err)?;
    if let Some(ca) = &tls.ca_pem {
        for cert in X509::stack_from_pem(ca.as_bytes()).map_err(err)? {
            b.cert_store_mut().add_cert(cert).map_err(err)?;
        }
    }
    b.set_verify(if tls.sslmode.verifies() { SslVerifyMode::PEER } else { SslVerifyMode::NONE });
    Ok(b.build())
}

/// Whether a connection must check that the certificate names the host.
pub(crate) fn check_hostname(tls: &Tls) -> bool {
    tls.sslmode == SslMode::VerifyFull
}

/// The same for tokio-postgres.
pub(crate) fn make_tls(tls: &Tls) -> Result<postgres_openssl::MakeTlsConnector> {
    let mut m = postgres_openssl::MakeTlsConnector::new(connector(tls)?);
    let full = check_hostname(tls);
    m.set_callback(move |c, _host| {
        c.set_verify_hostname(full);
        Ok(())
    });
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: bool, mode: SslMode) -> Tls {
        Tls {
            cert_pem: String::new(),
            key_pem: crate::config::Secret::new(String::new()),
            ca_pem: ca.then(String::new),
            sslmode: mode,
        }
    }

    #[test]
    fn modes_parse_and_say_what_they_check() {
        for m in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(SslMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(SslMode::parse("prefer"), None);
        assert!(!SslMode::Require.verifies() && SslMode::VerifyCa.verifies());
        assert!(check_hostname(&tls(true, SslMode::VerifyFull)) && !check_hostname(&tls(true, SslMode::VerifyCa)));
    }

    #[test]
    fn libpq_gets_the_root_cert_only_with_a_ca() {
        let p = Path::new("/d/root.crt");
        assert_eq!(libpq_params(&tls(false, SslMode::Require), p), vec![("sslmode", "require".to_string())]);
        assert_eq!(
            libpq_params(&tls(true, SslMode::VerifyFull), p),
            vec![("sslmode", "verify-full".to_string()), ("sslrootcert", "/d/root.crt".to_string())]
        );
    }
}
