//! `pgrepl init --tls`: a private CA and one server certificate for the
//! cluster, so encrypted, verified replication is one command away. ECDSA
//! P-256, SHA-256; the CA lives 10 years, the server certificate 825 days
//! (the longest clients commonly accept). For nodes on other hosts, add
//! their names or addresses with `--tls-host`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SecureRandom;

use crate::error::{Error, Result};

/// PEM texts of a new CA and a server certificate it signed.
pub(crate) struct Generated {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("making TLS certificates: {e}"))
}

/// Subject `CN=cn`, a random 127-bit serial, valid from now for `days`.
fn params(cn: &str, days: i64) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut serial).map_err(|_| err("no randomness for a serial"))?;
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now;
    p.not_after = now + time::Duration::days(days);
    Ok(p)
}

/// A CA and a server certificate for `hosts` (IP addresses become IP SANs,
/// anything else DNS SANs).
pub(crate) fn generate(cluster: &str, hosts: &[String]) -> Result<Generated> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut ca = params(&format!("pgrepl {cluster} CA"), 3650)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut s = params(&format!("pgrepl {cluster}"), 825)?;
    s.is_ca = IsCa::ExplicitNoCa;
    s.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyAgreement];
    s.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    for h in hosts {
        s.subject_alt_names.push(match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(h.clone().try_into().map_err(|e| err(format!("--tls-host {h}: {e}")))?),
        });
    }
    let server_cert = s.signed_by(&server_key, &ca_cert, &ca_key).map_err(err)?;
    Ok(Generated {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    #[test]
    fn the_server_certificate_is_signed_by_the_ca_and_names_the_hosts() {
        let g = generate("demo", &["127.0.0.1".into(), "localhost".into(), "db-2.internal".into()]).unwrap();
        let roots = std::sync::Arc::new(crate::pg::tls::roots(&g.ca_cert).unwrap());
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, crate::pg::tls::provider())
            .build()
            .unwrap();
        let leaf = crate::pg::tls::certs(&g.server_cert).unwrap().remove(0);
        for name in ["127.0.0.1", "localhost", "db-2.internal"] {
            let n = ServerName::try_from(name).unwrap();
            assert!(v.verify_server_cert(&leaf, &[], &n, &[], UnixTime::now()).is_ok(), "{name} is named");
        }
        let other = ServerName::try_from("db-9.internal").unwrap();
        assert!(v.verify_server_cert(&leaf, &[], &other, &[], UnixTime::now()).is_err(), "only those");
        let foreign = generate("other", &["127.0.0.1".into()]).unwrap();
        let leaf = crate::pg::tls::certs(&foreign.server_cert).unwrap().remove(0);
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        assert!(v.verify_server_cert(&leaf, &[], &ip, &[], UnixTime::now()).is_err(), "another CA's");
        assert!(g.server_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
