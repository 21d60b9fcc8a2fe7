//! TLS between the nodes and everything that reaches them over TCP. With
//! `[tls]`, every node runs with `ssl = on` and the cluster's certificate,
//! pgrepl's own pg_hba lines for TCP become `hostssl` (a connection without
//! TLS is refused), and standbys, clones and pgrepl's own TCP connections
//! use the configured sslmode. One certificate serves every node, so for
//! `verify-full` it must name every node's host (as a DNS or IP SAN).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

/// The crypto provider every TLS connection and certificate uses: ring
/// (rcgen makes certificates with it too), so one is built.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM text, in order.
pub(crate) fn certs(pem: &str) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<std::result::Result<Vec<_>, _>>();
    match certs {
        Ok(c) if c.is_empty() => Err("it holds no PEM certificate".into()),
        Ok(c) => Ok(c),
        Err(e) => Err(format!("it is not a PEM certificate ({e})")),
    }
}

/// The private key in a PEM text (PKCS#8, SEC1 or PKCS#1).
pub(crate) fn private_key(pem: &str) -> std::result::Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("it is not a PEM private key ({e})"))
}

/// The certificates of a PEM text as trust anchors.
pub(crate) fn roots(pem: &str) -> std::result::Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in certs(pem)? {
        store.add(c).map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
    }
    Ok(store)
}

/// The system's CAs (Debian's bundle), for endpoints given no CA file.
pub(crate) fn system_roots() -> RootCertStore {
    let pem = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let mut store = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
        let _ = store.add(c);
    }
    store
}

/// A server's certificate checked as libpq's `sslmode` says: `require`
/// checks nothing (the channel is encrypted, the peer unverified),
/// `verify-ca` the chain to the CA, `verify-full` the chain and the name.
#[derive(Debug)]
struct BySslMode {
    mode: SslMode,
    /// The chain check; None for `require`.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BySslMode {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(v) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        match v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // The name is checked last, once the chain is valid.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.mode == SslMode::VerifyCa => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The client side of pgrepl's own connections to the nodes (SQL and the
/// replication protocol), checking the certificate as `sslmode` says.
pub(crate) fn client_config(tls: &Tls) -> Result<Arc<ClientConfig>> {
    let err = |e: String| Error::Other(format!("setting up TLS: {e}"));
    let provider = provider();
    let webpki = if tls.sslmode.verifies() {
        let roots = match &tls.ca_pem {
            Some(ca) => roots(ca).map_err(|e| err(format!("[tls] ca_file: {e}")))?,
            None => system_roots(),
        };
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| err(e.to_string()))?;
        Some(v)
    } else {
        None
    };
    let verifier = Arc::new(BySslMode { mode: tls.sslmode, webpki, provider: provider.clone() });
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Whether a connection must check that the certificate names the host.
pub(crate) fn check_hostname(tls: &Tls) -> bool {
    tls.sslmode == SslMode::VerifyFull
}

/// The name a server is checked against: an IP address or a DNS name.
pub(crate) fn server_name(host: &str) -> std::result::Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a host name a certificate can carry ({e})"))
}

/// TLS for tokio-postgres, on [`client_config`].
pub(crate) fn make_tls(tls: &Tls) -> Result<MakeTls> {
    Ok(MakeTls(client_config(tls)?))
}

pub(crate) use super::tls_stream::MakeTls;

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
