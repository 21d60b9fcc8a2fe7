//! The cluster-wide settings every agent must agree on, recorded once in
//! `<prefix>/<cluster>/config` by the first agent to start. An agent whose
//! config differs refuses to start and names each difference: two hosts
//! with different node lists, lease timings or durability would each act
//! on their own idea of the cluster.

use serde_json::{json, Value};

use super::gateway::{b64, unb64, Gateway};
use crate::config::Config;
use crate::error::{Error, Result};

/// What must be the same on every host.
pub(crate) fn of(cfg: &Config) -> Value {
    let e = cfg.etcd.as_ref();
    json!({
        "nodes": cfg.nodes.iter().map(|n| format!("{} {}:{} priority {}", n.name, n.host, n.port, n.failover_priority)).collect::<Vec<_>>(),
        "etcd.ttl": e.map(|e| format!("{:?}", e.ttl)),
        "failover.mode": format!("{:?}", cfg.failover.mode),
        "failover.primary_start_timeout": format!("{:?}", cfg.failover.primary_start_timeout),
        "failover.auto_rejoin": cfg.failover.auto_rejoin,
        "replication.durability": format!("{:?}", cfg.replication.durability),
        "replication.sync_count": cfg.replication.sync_count,
        "replication.slots": cfg.replication.slots,
        "replication.user": cfg.replication.user,
    })
}

/// Each setting that differs, as a sentence.
pub(crate) fn differences(recorded: &Value, mine: &Value) -> Vec<String> {
    let (Some(r), Some(m)) = (recorded.as_object(), mine.as_object()) else {
        return vec!["the recorded settings are not readable".into()];
    };
    let mut keys: Vec<&String> = r.keys().chain(m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| r.get(*k) != m.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("(none)".to_string(), |v| v.to_string());
            format!("{k}: recorded {}, this host's config {}", show(r.get(k)), show(m.get(k)))
        })
        .collect()
}

/// Record `cfg`'s settings if none are, else compare: a difference refuses.
pub(crate) fn check(gw: &Gateway, prefix: &str, cfg: &Config) -> Result<()> {
    let key = format!("{}/{}/config", prefix.trim_end_matches('/'), cfg.cluster_name);
    let mine = of(cfg);
    let txn = json!({
        "compare": [{ "key": b64(&key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
        "success": [{ "request_put": { "key": b64(&key), "value": b64(&mine.to_string()) } }],
        "failure": [{ "request_range": { "key": b64(&key) } }],
    });
    let v = gw.call_blocking("/v3/kv/txn", &txn)?;
    if v["succeeded"].as_bool() == Some(true) {
        return Ok(());
    }
    let text = v["responses"][0]["response_range"]["kvs"][0]["value"].as_str().and_then(unb64).unwrap_or_default();
    let recorded: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let diff = differences(&recorded, &mine);
    if diff.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "not starting: this host's cluster-wide settings differ from the ones recorded in etcd ({key}) by the first agent:\n  {}\nUse the same pgrepl.toml on every host. To change them on purpose: stop every agent, `etcdctl del {key}`, then start them with the new file",
        diff.join("\n  ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_difference_is_named_with_both_values() {
        let a = json!({ "nodes": ["pg-1 a:1", "pg-2 b:1"], "etcd.ttl": "3s", "replication.durability": "Async" });
        let b = json!({ "nodes": ["pg-1 a:1"], "etcd.ttl": "3s", "replication.durability": "SyncStrict" });
        assert_eq!(differences(&a, &a), Vec::<String>::new());
        assert_eq!(
            differences(&a, &b),
            vec![
                "nodes: recorded [\"pg-1 a:1\",\"pg-2 b:1\"], this host's config [\"pg-1 a:1\"]".to_string(),
                "replication.durability: recorded \"Async\", this host's config \"SyncStrict\"".to_string(),
            ]
        );
        let c = json!({ "etcd.ttl": "3s" });
        assert_eq!(
            differences(&c, &json!({})),
            vec!["etcd.ttl: recorded \"3s\", this host's config (none)".to_string()]
        );
    }
}
