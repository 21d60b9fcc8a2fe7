//! HTTPS for the API (`[api] tls = true`): the `[tls]` certificate, and
//! client certificates checked against the cluster's CA. A client
//! certificate is asked for, never required: health checkers come without
//! one, and a valid one stands in for the token on the write endpoints.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;
use crate::pg::tls::{certs, private_key, provider, roots};

/// The acceptor for the API's listeners, or what is wrong with `[tls]`.
pub(super) fn acceptor(tls: &Tls) -> Result<TlsAcceptor, String> {
    let chain = certs(&tls.cert_pem).map_err(|e| format!("the [tls] certificate: {e}"))?;
    let key = private_key(tls.key_pem.expose()).map_err(|e| format!("the [tls] key: {e}"))?;
    let provider = provider();
    let b = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let b = match &tls.ca_pem {
        Some(ca) => {
            let roots = roots(ca).map_err(|e| format!("the [tls] CA: {e}"))?;
            // Ask, verify what is sent, require nothing.
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("the [tls] CA: {e}"))?;
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let cfg =
        b.with_single_cert(chain, key).map_err(|e| format!("the [tls] key does not match its certificate: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// The TLS handshake: the stream, and whether the client showed a
/// certificate the CA signed (one it did not sign fails the handshake).
/// `None` when the handshake fails.
pub(super) async fn handshake(acceptor: &TlsAcceptor, s: TcpStream) -> Option<(TlsStream<TcpStream>, bool)> {
    let stream = acceptor.accept(s).await.ok()?;
    let verified = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
    Some((stream, verified))
}
