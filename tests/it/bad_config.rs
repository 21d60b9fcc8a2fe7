//! Every bad-config case: exit code 2, the exact message with file:line:col,
//! all problems at once, and nothing created on disk.

use crate::harness::{text, Cluster};

fn run(c: &Cluster, file: &str, body: &str) -> (i32, String) {
    c.write(file, body);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["-c", file, "up"])
        .current_dir(c.dir.path())
        .output()
        .unwrap();
    assert!(!c.path("data").exists(), "a config error created the data root");
    (o.status.code().unwrap_or(-1), text(&o.stderr).replace(&c.dir.path().display().to_string(), "DIR"))
}

const HEAD: &str = "[cluster]\nname = \"bad\"\n\n[replication]\npassword_file = \"secrets/replicator.password\"\n";

#[test]
fn syntax_error_points_at_line_and_column() {
    let c = Cluster::empty();
    let (code, err) = run(&c, "pgrepl.toml", "[cluster\nname = \"x\"\n");
    assert_eq!(code, 2);
    assert_eq!(err, "pgrepl: error: invalid configuration:\npgrepl.toml:1:9: unclosed table, expected `]`\n");
}

#[test]
fn unknown_key_is_rejected_with_the_keys_that_exist() {
    let c = Cluster::empty();
    let (code, err) = run(&c, "pgrepl.toml", "[cluster]\nname = \"x\"\ncolour = \"red\"\n");
    assert_eq!(code, 2);
    assert_eq!(err, "pgrepl: error: invalid configuration:\npgrepl.toml:3:1: unknown field `colour`, expected one of `name`, `data_root`, `postgres_bin`, `os_user`\n");
}

#[test]
fn wrong_type_is_rejected() {
    let c = Cluster::empty();
    let (code, err) = run(&c, "pgrepl.toml", &format!("{HEAD}\n[[node]]\nname = \"a\"\nport = \"abc\"\n"));
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "pgrepl: error: invalid configuration:\npgrepl.toml:9:8: invalid type: string \"abc\", expected i64\n"
    );
}

#[test]
fn every_validation_problem_is_listed_at_once_in_file_order() {
    let c = Cluster::empty();
    let body = "[cluster]
name = \"bad\"

[replication]
password_file = \"secrets/missing.password\"

[[node]]
name = \"pg-1\"
port = 15432
role = \"primary\"

[[node]]
name = \"pg-1\"
port = 15432
role = \"primary\"

[[node]]
name = \"pg-3\"
port = 15440
data_dir = \"data/pg-1\"

[[database]]
name = \"chat\"
schema = [\"nope.sql\"]
";
    let (code, err) = run(&c, "pgrepl.toml", body);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "pgrepl: error: invalid configuration:
pgrepl.toml:5:17: cannot read replication password file DIR/secrets/missing.password: No such file or directory (os error 2); create it (mode 0600) or fix the path
pgrepl.toml:13:8: duplicate node name `pg-1` (first defined at line 8); node names must be unique
pgrepl.toml:14:8: node `pg-1` uses 127.0.0.1:15432, which node `pg-1` already uses; give each node its own port
pgrepl.toml:15:8: node `pg-1` is a second primary (node `pg-1` at line 8 is one already); exactly one node is bootstrapped as primary
pgrepl.toml:20:12: node `pg-3` uses data dir DIR/data/pg-1, which node `pg-1` already uses; give each node its own data_dir
pgrepl.toml:24:11: schema file DIR/nope.sql does not exist; fix the path (it is relative to the config file)
"
    );
}

#[test]
fn no_primary_is_rejected() {
    let c = Cluster::empty();
    let (code, err) =
        run(&c, "pgrepl.toml", &format!("{HEAD}\n[[node]]\nname = \"a\"\nport = 15432\nrole = \"replica\"\n"));
    assert_eq!(code, 2);
    assert_eq!(err, "pgrepl: error: invalid configuration:\npgrepl.toml:8:8: no node has role = \"primary\"; mark exactly one node as primary (or leave the first node's role unset)\n");
}

#[test]
fn ports_in_the_ephemeral_range_are_rejected() {
    let c = Cluster::empty();
    let (code, err) = run(&c, "pgrepl.toml", &format!("{HEAD}\n[[node]]\nname = \"a\"\nport = 40000\n"));
    assert_eq!(code, 2);
    assert!(err.contains("pgrepl.toml:9:8: port 40000 is in Linux's ephemeral range"), "{err}");
}

#[test]
fn missing_config_says_how_to_make_one() {
    let c = Cluster::empty();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("status")
        .current_dir(c.dir.path())
        .env_remove("PGREPL_CONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("pgrepl.toml: cannot read config") && text(&o.stderr).contains("pgrepl init"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn the_example_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pgrepl.toml");
    let cfg = pgrepl::load_config(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.nodes.len(), 3);
    assert_eq!(cfg.bootstrap_primary().name, "pg-1");
    assert!(cfg.nodes.iter().all(|n| n.port < 32768));
}

#[test]
fn init_writes_a_config_that_loads_and_refuses_to_overwrite() {
    let c = Cluster::empty();
    let dir = c.path("fresh");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl")).arg("init").arg(&dir).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cfg = pgrepl::load_config(&dir.join("pgrepl.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.nodes.len(), 3);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("secrets/replicator.password")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(cfg.replication.password.expose().len(), 32);
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_pgrepl")).arg("init").arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(64));
    assert!(text(&again.stderr).contains("already exists"));
}

#[test]
fn tls_problems_name_the_key_and_the_fix() {
    let c = Cluster::empty();
    c.write("certs/not-pem.crt", "hello\n");
    let body = format!(
        "{HEAD}\n[[node]]\nname = \"a\"\nport = 15432\n\n[tls]\ncert_file = \"certs/not-pem.crt\"\nkey_file = \"certs/missing.key\"\nsslmode = \"verify-ca\"\n"
    );
    let (code, err) = run(&c, "pgrepl.toml", &body);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "pgrepl: error: invalid configuration:
pgrepl.toml:12:13: TLS certificate DIR/certs/not-pem.crt is not a PEM file (no -----BEGIN line)
pgrepl.toml:13:12: cannot read TLS key DIR/certs/missing.key: No such file or directory (os error 2); fix the path
pgrepl.toml:14:11: sslmode `verify-ca` verifies the nodes' certificate, so [tls] needs ca_file
"
    );
}

/// Fault testing found `sync-strict` with `sync_count = 5` and one standby
/// accepted: it started, then blocked every commit forever.
#[test]
fn sync_count_above_the_standbys_that_could_confirm_is_refused() {
    let c = Cluster::empty();
    let body = format!(
        "{HEAD}durability = \"sync-strict\"\nsync_count = 5\n\n[[node]]\nname = \"a\"\nport = 15432\n\n[[node]]\nname = \"b\"\nport = 15433\n"
    );
    let (code, err) = run(&c, "pgrepl.toml", &body);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "pgrepl: error: invalid configuration:\npgrepl.toml:7:14: sync_count = 5 but the cluster has only 1 standby(s) that could confirm a commit; lower sync_count to at most 1 or add [[node]]s\n"
    );
}

#[test]
fn etcd_problems_name_the_key_and_the_fix() {
    let c = Cluster::empty();
    let body = format!(
        "{HEAD}\n[[node]]\nname = \"a\"\nport = 15432\n\n[etcd]\nendpoints = [\"10.0.0.1:2379\", \"https://10.0.0.2:2379\", \"http://10.0.0.3:2379\"]\nttl = \"1s\"\nprefix = \"pgrepl\"\ncert_file = \"c.pem\"\nusername = \"pgrepl\"\n"
    );
    let (code, err) = run(&c, "pgrepl.toml", &body);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "pgrepl: error: invalid configuration:
pgrepl.toml:12:13: [etcd] endpoints mix http:// and https://; use one scheme for every member
pgrepl.toml:12:14: etcd endpoint `10.0.0.1:2379` is not a URL; write it as http://HOST:PORT or https://HOST:PORT
pgrepl.toml:13:7: [etcd] ttl 1s is too short: a leader must renew several times per TTL; use at least 2s (default 3s)
pgrepl.toml:14:10: [etcd] prefix `pgrepl` must start with `/`, e.g. \"/pgrepl\"
pgrepl.toml:15:13: [etcd] cert_file and key_file go together; set both (a client certificate and its key) or neither
pgrepl.toml:16:12: [etcd] username and password_file go together; set both or neither
"
    );
    let (code, err) =
        run(&c, "pgrepl.toml", &format!("{HEAD}\n[[node]]\nname = \"a\"\nport = 15432\n\n[etcd]\nendpoints = []\n"));
    assert_eq!(code, 2);
    assert!(err.contains("pgrepl.toml:12:13: [etcd] endpoints is empty; list every etcd member's client URL"), "{err}");
}

/// Patroni users run every node on 5432 and its API on 8008: nodes on
/// different hosts may share ports; on one host they still may not.
#[test]
fn nodes_on_different_hosts_may_share_port_and_api_port() {
    let c = Cluster::empty();
    let node = |name: &str, host: &str| {
        format!("\n[[node]]\nname = \"{name}\"\nhost = \"{host}\"\nport = 5432\napi_port = 8008\n")
    };
    let body = format!(
        "{HEAD}{}{}\n[etcd]\nendpoints = [\"http://10.0.0.11:2379\"]\n",
        node("a", "10.0.0.1"),
        node("b", "10.0.0.2")
    );
    c.write("pgrepl.toml", &body);
    let cfg = pgrepl::load_config(&c.path("pgrepl.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.nodes.iter().map(|n| (n.port, n.api_port)).collect::<Vec<_>>(), vec![(5432, 8008), (5432, 8008)]);
    let etcd = cfg.etcd.as_ref().expect("[etcd] read");
    assert_eq!(etcd.endpoints, vec!["http://10.0.0.11:2379".to_string()]);
    assert_eq!((etcd.prefix.as_str(), etcd.ttl), ("/pgrepl", std::time::Duration::from_secs(3)));
    let (code, err) = run(&c, "pgrepl.toml", &body.replace("10.0.0.2", "10.0.0.1"));
    assert_eq!(code, 2);
    assert!(err.contains("node `b` uses 10.0.0.1:5432, which node `a` already uses"), "{err}");
    assert!(err.contains("node `b`'s api_port 8008 is already used by node `a`"), "{err}");
}
