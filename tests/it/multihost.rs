//! Nodes on two hosts, as in seed 000: the primary on this host, a replica
//! on a "second host" (its own network namespace and address on a veth
//! pair, and its own filesystem view: a separate data root and config copy).

use std::process::Command;
use std::time::Duration;

use crate::harness::{is_root, text, wait_until, Cluster};

/// A network namespace joined to the root namespace by a veth pair.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn new(tag: u32) -> Option<Netns> {
        let name = format!("pgrepl-it{tag}");
        let host_if = format!("pgr{tag}h");
        let peer = format!("pgr{tag}n");
        let net = 10 + tag % 200;
        let cmds: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                peer.clone(),
            ],
            vec!["link".into(), "set".into(), peer.clone(), "netns".into(), name.clone()],
            vec!["addr".into(), "add".into(), format!("10.231.{net}.1/24"), "dev".into(), host_if.clone()],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec![
                "-n".into(),
                name.clone(),
                "addr".into(),
                "add".into(),
                format!("10.231.{net}.2/24"),
                "dev".into(),
                peer.clone(),
            ],
            vec!["-n".into(), name.clone(), "link".into(), "set".into(), peer.clone(), "up".into()],
            vec!["-n".into(), name.clone(), "link".into(), "set".into(), "lo".into(), "up".into()],
        ];
        let ns = Netns { name, host_if };
        for c in cmds {
            let o = Command::new("ip").args(&c).output().ok()?;
            if !o.status.success() {
                eprintln!("ip {c:?}: {}", text(&o.stderr));
                return None;
            }
        }
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

#[test]
fn replica_on_a_second_host_clones_over_the_network_and_streams() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let tag = std::process::id() % 10_000;
    let Some(ns) = Netns::new(tag) else { panic!("could not create a network namespace (is iproute2 installed?)") };
    let net = 10 + tag % 200;
    let (h1, h2) = (format!("10.231.{net}.1"), format!("10.231.{net}.2"));
    let c = Cluster::new(1);
    // Across hosts the traffic is encrypted and the certificate checked
    // against both hosts' addresses (verify-full).
    c.make_certs(&[&format!("IP:{h1}"), &format!("IP:{h2}"), "IP:127.0.0.1"], None);
    let body = std::fs::read_to_string(c.config()).unwrap() + &Cluster::tls_section("ca.crt");
    let body = body
        .replacen(&format!("port = {}", c.ports[0]), &format!("host = \"{h1}\"\nport = {}", c.ports[0]), 1)
        .replacen(&format!("port = {}", c.ports[1]), &format!("host = \"{h2}\"\nport = {}", c.ports[1]), 1);
    c.write("pgrepl.toml", &body);
    // The second host's copy of the config, with its own data root.
    c.write("host2.toml", &body.replace("data_root = \"data\"", "data_root = \"host2\""));

    // On this host, `up` runs only the primary and says where the rest goes.
    let out = c.up();
    assert!(out.contains(&format!("leaving pg-2 ({h2}) to their own hosts")), "{out}");

    // On the second host: `up pg-2` clones from the primary across the veth.
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_pgrepl"), "-c"])
        .arg(c.path("host2.toml"))
        .args(["up", "--detach", "pg-2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "up pg-2 in the namespace failed:\n{}\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("cloning from pg-1"), "{}", text(&o.stdout));

    // `status` from the first host reaches both nodes (pg-2 over TLS).
    wait_until("pg-2 streaming from the other host", Duration::from_secs(60), || c.streaming("pg-2"));
    let st = c.node_status("pg-2");
    assert_eq!(st["role"], "replica", "{st}");
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(
        c.sql("pg-1", "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)").unwrap(),
        "t",
        "the other host's standby streams without TLS"
    );

    // A write on the primary reaches the replica on the other host.
    c.sql("pg-1", "CREATE TABLE across AS SELECT 42 AS answer").unwrap();
    wait_until("row on the other host", Duration::from_secs(30), || {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_pgrepl"), "-c"])
            .arg(c.path("host2.toml"))
            .args(["psql", "pg-2", "--", "-tAc", "SELECT answer FROM across"])
            .output()
            .unwrap();
        text(&o.stdout).trim() == "42"
    });
    let down = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_pgrepl"), "-c"])
        .arg(c.path("host2.toml"))
        .arg("down")
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down.stderr));
}
