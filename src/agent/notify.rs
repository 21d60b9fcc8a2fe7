//! Tells systemd how the agent is doing, under a `Type=notify` unit
//! (`pgrepl systemd`): `READY=1` once this host's nodes are up in their
//! roles, `STOPPING=1` when it begins to stop them, and a `STATUS=` line
//! for `systemctl status`. The protocol is one datagram to the socket in
//! `$NOTIFY_SOCKET`; without it (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Send `state` (newline-separated `KEY=value` lines) to systemd; false
/// when not under systemd or the send failed (which changes nothing:
/// readiness is a courtesy to the service manager, not a condition).
pub(crate) fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    let Ok(sock) = UnixDatagram::unbound() else { return false };
    let bytes = path.as_encoded_bytes();
    // `@name` is a socket in the abstract namespace.
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), &path),
    };
    sent.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        // The test runner is not under a notify unit; a set variable would
        // be systemd's, and this test would then say nothing about us.
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!notify("READY=1"));
        }
    }
}
