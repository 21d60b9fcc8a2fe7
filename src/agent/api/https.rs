//! HTTPS for the API (`[api] tls = true`): the `[tls]` certificate, and
//! client certificates checked against the cluster's CA. A client
//! certificate is asked for, never required: health checkers come without
//! one, and a valid one stands in for the token on the write endpoints.

use std::pin::Pin;

use openssl::pkey::PKey;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::{X509VerifyResult, X509};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::config::Tls;

/// The acceptor for the API's listeners, or what is wrong with `[tls]`.
pub(super) fn acceptor(tls: &Tls) -> Result<SslAcceptor, String> {
    fn e(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> String {
        move |err| format!("{what}: {err}")
    }
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(e("TLS setup"))?;
    let mut chain = X509::stack_from_pem(tls.cert_pem.as_bytes()).map_err(e("the [tls] certificate"))?.into_iter();
    let leaf = chain.next().ok_or("the [tls] certificate file holds no certificate")?;
    b.set_certificate(&leaf).map_err(e("the [tls] certificate"))?;
    for extra in chain {
        b.add_extra_chain_cert(extra).map_err(e("the [tls] certificate chain"))?;
    }
    let key = PKey::private_key_from_pem(tls.key_pem.expose().as_bytes()).map_err(e("the [tls] key"))?;
    b.set_private_key(&key).map_err(e("the [tls] key"))?;
    b.check_private_key().map_err(e("the [tls] key does not match its certificate"))?;
    if let Some(ca) = &tls.ca_pem {
        for c in X509::stack_from_pem(ca.as_bytes()).map_err(e("the [tls] CA"))? {
            b.add_client_ca(&c).map_err(e("the [tls] CA"))?;
            b.cert_store_mut().add_cert(c).map_err(e("the [tls] CA"))?;
        }
        // PEER without FAIL_IF_NO_PEER_CERT: ask, verify what is sent, require nothing.
        b.set_verify(SslVerifyMode::PEER);
    }
    Ok(b.build())
}

/// The TLS handshake: the stream, and whether the client showed a
/// certificate the CA signed. `None` when the handshake fails.
pub(super) async fn handshake(acceptor: &SslAcceptor, s: TcpStream) -> Option<(SslStream<TcpStream>, bool)> {
    let ssl = Ssl::new(acceptor.context()).ok()?;
    let mut stream = SslStream::new(ssl, s).ok()?;
    Pin::new(&mut stream).accept().await.ok()?;
    let verified = stream.ssl().peer_certificate().is_some() && stream.ssl().verify_result() == X509VerifyResult::OK;
    Some((stream, verified))
}
