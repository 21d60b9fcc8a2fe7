//! `pgrepl init --tls`: a private CA and one server certificate for the
//! cluster, so encrypted, verified replication is one command away. ECDSA
//! P-256, SHA-256; the CA lives 10 years, the server certificate 825 days
//! (the longest clients commonly accept). For nodes on other hosts, add
//! their names or addresses with `--tls-host`.

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use crate::error::{Error, Result};

/// PEM texts of a new CA and a server certificate it signed.
pub(crate) struct Generated {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
}

fn err(e: openssl::error::ErrorStack) -> Error {
    Error::Other(format!("making TLS certificates: {e}"))
}

fn key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(err)?;
    PKey::from_ec_key(EcKey::generate(&group).map_err(err)?).map_err(err)
}

fn serial() -> Result<Asn1Integer> {
    let mut bn = BigNum::new().map_err(err)?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false).map_err(err)?;
    bn.to_asn1_integer().map_err(err)
}

/// A certificate builder with subject `CN=cn`, a random serial and a
/// validity of `days`; the subject is returned too (a self-signed
/// certificate's issuer).
fn builder(cn: &str, days: u32, key: &PKey<Private>) -> Result<(X509Builder, openssl::x509::X509Name)> {
    let mut name = X509NameBuilder::new().map_err(err)?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn).map_err(err)?;
    let name = name.build();
    let mut b = X509Builder::new().map_err(err)?;
    b.set_version(2).map_err(err)?;
    let serial = serial()?;
    b.set_serial_number(&serial).map_err(err)?;
    b.set_subject_name(&name).map_err(err)?;
    b.set_pubkey(key).map_err(err)?;
    let (from, until) = (Asn1Time::days_from_now(0).map_err(err)?, Asn1Time::days_from_now(days).map_err(err)?);
    b.set_not_before(&from).map_err(err)?;
    b.set_not_after(&until).map_err(err)?;
    Ok((b, name))
}

/// A CA and a server certificate for `hosts` (IP addresses become IP SANs,
/// anything else DNS SANs).
pub(crate) fn generate(cluster: &str, hosts: &[String]) -> Result<Generated> {
    let ca_key = key()?;
    let (mut ca, subject) = builder(&format!("pgrepl {cluster} CA"), 3650, &ca_key)?;
    ca.append_extension(BasicConstraints::new().critical().ca().build().map_err(err)?).map_err(err)?;
    ca.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().map_err(err)?).map_err(err)?;
    // Self-signed: issuer = subject.
    ca.set_issuer_name(&subject).map_err(err)?;
    ca.sign(&ca_key, MessageDigest::sha256()).map_err(err)?;
    let ca_cert: X509 = ca.build();

    let server_key = key()?;
    let (mut s, _) = builder(&format!("pgrepl {cluster}"), 825, &server_key)?;
    s.set_issuer_name(ca_cert.subject_name()).map_err(err)?;
    s.append_extension(BasicConstraints::new().build().map_err(err)?).map_err(err)?;
    s.append_extension(KeyUsage::new().critical().digital_signature().key_agreement().build().map_err(err)?)
        .map_err(err)?;
    s.append_extension(ExtendedKeyUsage::new().server_auth().build().map_err(err)?).map_err(err)?;
    let mut san = SubjectAlternativeName::new();
    for h in hosts {
        if h.parse::<std::net::IpAddr>().is_ok() {
            san.ip(h);
        } else {
            san.dns(h);
        }
    }
    let san = san.build(&s.x509v3_context(Some(&ca_cert), None)).map_err(err)?;
    s.append_extension(san).map_err(err)?;
    s.sign(&ca_key, MessageDigest::sha256()).map_err(err)?;
    let server_cert = s.build();

    let pem = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(Generated {
        ca_cert: pem(ca_cert.to_pem().map_err(err)?),
        ca_key: pem(ca_key.private_key_to_pem_pkcs8().map_err(err)?),
        server_cert: pem(server_cert.to_pem().map_err(err)?),
        server_key: pem(server_key.private_key_to_pem_pkcs8().map_err(err)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;

    #[test]
    fn the_server_certificate_is_signed_by_the_ca_and_names_the_hosts() {
        let g = generate("demo", &["127.0.0.1".into(), "localhost".into(), "db-2.internal".into()]).unwrap();
        let ca = X509::from_pem(g.ca_cert.as_bytes()).unwrap();
        let server = X509::from_pem(g.server_cert.as_bytes()).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca).unwrap();
        let store = store.build();
        let mut ctx = X509StoreContext::new().unwrap();
        let chain = Stack::new().unwrap();
        assert!(ctx.init(&store, &server, &chain, |c| c.verify_cert()).unwrap(), "not signed by the CA");
        let sans = server.subject_alt_names().unwrap();
        let dns: Vec<&str> = sans.iter().filter_map(|n| n.dnsname()).collect();
        assert_eq!(dns, ["localhost", "db-2.internal"]);
        let ips: Vec<&[u8]> = sans.iter().filter_map(|n| n.ipaddress()).collect();
        assert_eq!(ips, [&[127u8, 0, 0, 1][..]]);
        assert!(g.server_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
