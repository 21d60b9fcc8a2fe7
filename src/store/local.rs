//! Which nodes live on this machine: a node is local when its `host`
//! resolves to an address of one of this machine's interfaces.

use std::collections::HashSet;
use std::net::{IpAddr, ToSocketAddrs};

/// This machine's interface addresses.
pub(crate) fn local_addresses() -> HashSet<IpAddr> {
    let mut set = HashSet::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                set.insert(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                set.insert(IpAddr::V6(v6.ip()));
            }
        }
    }
    set
}

/// True when `host` is one of `local`'s addresses.
pub(crate) fn is_local(host: &str, local: &HashSet<IpAddr>) -> bool {
    let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (host, 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default(),
    };
    ips.iter().any(|ip| local.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_documentation_addresses_are_not() {
        let local = local_addresses();
        assert!(is_local("127.0.0.1", &local));
        assert!(!is_local("192.0.2.77", &local));
    }
}
