//! `[tls]`: nodes serve TLS with the cluster's certificate, standbys and
//! both clone methods connect with verify-full, and plain TCP is refused.
//! Certificates come from the `openssl` command, made fresh per test.

use std::process::Command;
use std::time::Duration;

use crate::harness::{text, wait_until, Cluster, PASSWORD};

const T: Duration = Duration::from_secs(60);

/// Connect over TCP with libpq's `sslmode` and return psql's result.
fn psql_tcp(port: u16, sslmode: &str) -> std::process::Output {
    Command::new("psql")
        .arg(format!("host=127.0.0.1 port={port} user=replicator dbname=postgres sslmode={sslmode} connect_timeout=5"))
        .args(["-X", "-tAc", "SELECT 1"])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("psql")
}

#[test]
fn replication_and_both_clone_methods_run_over_verified_tls_and_plain_tcp_is_refused() {
    let c = Cluster::with_extra(1, "");
    c.make_certs(&["IP:127.0.0.1", "DNS:localhost"], None);
    let body = std::fs::read_to_string(c.config()).unwrap() + &Cluster::tls_section("ca.crt");
    c.write("pgrepl.toml", &body);
    c.up();
    let over_tls = "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)";
    wait_until("pg-2 streams over TLS", T, || c.sql("pg-1", over_tls).as_deref() == Ok("1/1"));
    assert_eq!(c.node_status("pg-2")["replication"]["ssl"], true);
    let conninfo = c.sql("pg-2", "SHOW primary_conninfo").unwrap();
    assert!(conninfo.contains("sslmode=verify-full") && conninfo.contains("sslrootcert="), "{conninfo}");

    // Both base backups over the same verified TLS (a new cluster's replica
    // is seeded, so re-clones take them).
    let out = c.ok(&["reclone", "pg-2", "--discard", "--yes"]);
    assert!(out.contains("with pg_basebackup"), "{out}");
    wait_until("pg-2 streams over TLS after pg_basebackup", T, || c.sql("pg-1", over_tls).as_deref() == Ok("1/1"));
    c.write("pgrepl.toml", &body.replacen("[replication]\n", "[replication]\nclone_method = \"builtin\"\n", 1));
    let out = c.ok(&["reclone", "pg-2", "--discard", "--yes"]);
    assert!(out.contains("with pgrepl's built-in base backup"), "{out}");
    wait_until("pg-2 streams over TLS after the re-clone", T, || c.sql("pg-1", over_tls).as_deref() == Ok("1/1"));

    // Plain TCP is refused; TLS with the right password gets in.
    let plain = psql_tcp(c.ports[0], "disable");
    assert!(!plain.status.success());
    assert!(text(&plain.stderr).contains("no encryption"), "{}", text(&plain.stderr));
    let tls = psql_tcp(c.ports[0], "require");
    assert!(tls.status.success(), "{}", text(&tls.stderr));
    // The key is the OS user's alone in every data dir.
    for n in ["pg-1", "pg-2"] {
        let m = std::fs::metadata(c.data_dir(n).join("server.key")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777, 0o600, "{n}");
    }
}

/// A seeded replica takes no base backup, so the login check before it
/// starts must find the wrong CA, with the same reason a clone gives.
#[test]
fn a_certificate_from_another_ca_stops_the_clone_with_the_reason() {
    let c = Cluster::with_replication(1, "clone_method = \"builtin\"\n", "");
    c.make_certs(&["IP:127.0.0.1", "DNS:localhost"], Some("other"));
    let body = std::fs::read_to_string(c.config()).unwrap() + &Cluster::tls_section("other.crt");
    c.write("pgrepl.toml", &body);
    let o = c.pgrepl(&["up", "--detach"]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("TLS handshake with 127.0.0.1 failed (sslmode verify-full)")
            && err.contains("invalid peer certificate"),
        "{err}"
    );
    assert!(!c.data_dir("pg-2").exists(), "a failed clone leaves no data dir behind");
}

#[test]
fn init_with_tls_makes_certificates_that_up_uses_with_verify_full() {
    let c = Cluster::empty();
    let o = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["init", "--tls", "--nodes", "2", "--name", "secure"])
        .arg(c.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("wrote a CA and a server certificate for 127.0.0.1, ::1, localhost"));
    let mode =
        |f: &str| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(c.path(f)).unwrap().permissions()) & 0o777;
    assert_eq!((mode("certs/ca.key"), mode("certs/server.key")), (0o600, 0o600));
    // The generated config on free ports, otherwise as written.
    let mut body = std::fs::read_to_string(c.config()).unwrap();
    assert!(body.contains("\n[tls]"), "{body}");
    let mut ports = Vec::new();
    for first in [15432, 15433] {
        let p = crate::harness::free_port();
        body = body.replace(&format!("port = {first}\n"), &format!("port = {p}\n"));
        ports.push(p);
    }
    c.write("pgrepl.toml", &body);
    c.up();
    wait_until("pg-2 streams over TLS", T, || {
        c.sql("pg-1", "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl")
            .as_deref()
            == Ok("1")
    });
    assert!(c.sql("pg-2", "SHOW primary_conninfo").unwrap().contains("sslmode=verify-full"));
    assert!(!psql_tcp(ports[0], "disable").status.success());
}
