//! tokio-postgres over rustls: the connector its `connect` takes, and the
//! stream it reads, with SCRAM channel binding (`tls-server-end-point`:
//! the hash of the server's certificate, RFC 5929), as libpq does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// Makes one TLS connector per connection, for the host it goes to.
#[derive(Clone)]
pub(crate) struct MakeTls(pub(super) Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<Connect> {
        let name = super::tls::server_name(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect { config: self.0.clone(), name })
    }
}

/// One connection's handshake.
pub(crate) struct Connect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(TlsStream(s))
        })
    }
}

/// An encrypted connection to a node.
pub(crate) struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, conn) = self.0.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| end_point_hash(c.as_ref()))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929's `tls-server-end-point`: the certificate hashed with its
/// signature's hash (SHA-256 for MD5 and SHA-1); None for an algorithm
/// this does not know (then SCRAM runs without channel binding).
fn end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    use ring::digest::{digest, SHA256, SHA384, SHA512};
    let alg = match signature_oid(der)? {
        // sha1/md5 with RSA, ecdsa-with-SHA1, and the SHA-256 family.
        [42, 134, 72, 134, 247, 13, 1, 1, 4 | 5 | 11]
        | [42, 134, 72, 206, 61, 4, 1]
        | [42, 134, 72, 206, 61, 4, 3, 2] => &SHA256,
        [42, 134, 72, 134, 247, 13, 1, 1, 12] | [42, 134, 72, 206, 61, 4, 3, 3] => &SHA384,
        [42, 134, 72, 134, 247, 13, 1, 1, 13] | [42, 134, 72, 206, 61, 4, 3, 4] => &SHA512,
        _ => return None,
    };
    Some(digest(alg, der).as_ref().to_vec())
}

/// The OID of a certificate's `signatureAlgorithm` (its content bytes):
/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }`.
fn signature_oid(der: &[u8]) -> Option<&[u8]> {
    let (cert, _) = element(der, 0x30)?;
    let (_, rest) = any_element(cert)?; // tbsCertificate
    let (alg, _) = element(rest, 0x30)?;
    element(alg, 0x06).map(|(oid, _)| oid)
}

/// A DER element with tag `tag` at the start of `b`: (its content, what follows).
fn element(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    (b.first() == Some(&tag)).then_some(())?;
    any_element(b)
}

fn any_element(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b.get(2..2 + n)?.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        (len, 2 + n)
    };
    let content = b.get(head..head + len)?;
    Some((content, &b[head + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_point_hash_follows_the_certificates_signature() {
        let g = crate::pg::certgen::generate("demo", &["127.0.0.1".into()]).unwrap();
        let der = crate::pg::tls::certs(&g.server_cert).unwrap().remove(0);
        // ecdsa-with-SHA256 (1.2.840.10045.4.3.2)
        assert_eq!(signature_oid(der.as_ref()), Some(&[42, 134, 72, 206, 61, 4, 3, 2][..]));
        let h = end_point_hash(der.as_ref()).unwrap();
        assert_eq!(h, ring::digest::digest(&ring::digest::SHA256, der.as_ref()).as_ref());
        assert_eq!(signature_oid(&[0x30, 0x05, 0x01]), None, "a truncated certificate");
    }
}
