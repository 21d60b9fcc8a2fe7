//! The cluster's record ([`State`]) as one etcd key, `<prefix>/<cluster>/state`,
//! changed by compare-and-set on its mod revision: two agents (or a command
//! and an agent) changing it at once never undo each other's change; the
//! loser reads again and reapplies its change.

use std::sync::Arc;

use serde_json::json;

use super::gateway::{b64, int, unb64, Gateway};
use crate::error::{Error, Result};
use crate::store::record::ClusterStore;
use crate::store::state::State;

/// How often a change is retried against concurrent writers.
const CAS_ATTEMPTS: usize = 20;

#[derive(Debug)]
pub(crate) struct EtcdRecord {
    gw: Arc<Gateway>,
    key: String,
    /// The leader key, compared by the leader's own writes.
    leader_key: String,
}

impl EtcdRecord {
    pub(crate) fn new(gw: Arc<Gateway>, prefix: &str, cluster: &str) -> EtcdRecord {
        let base = format!("{}/{cluster}", prefix.trim_end_matches('/'));
        EtcdRecord { gw, key: format!("{base}/state"), leader_key: format!("{base}/leader") }
    }

    /// The record and its mod revision (0: no record yet).
    fn read(&self) -> Result<(State, i64)> {
        let v = self.gw.call_blocking("/v3/kv/range", &json!({ "key": b64(&self.key) }))?;
        let Some(kv) = v["kvs"].get(0) else { return Ok((State::default(), 0)) };
        let text = kv["value"].as_str().and_then(unb64).unwrap_or_default();
        let st = serde_json::from_str(&text)
            .map_err(|e| Error::Other(format!("the cluster's record in etcd ({}) is not valid: {e}", self.key)))?;
        Ok((st, int(&kv["mod_revision"]).unwrap_or(0)))
    }
}

impl ClusterStore for EtcdRecord {
    fn load(&self) -> Result<State> {
        Ok(self.read()?.0)
    }

    fn change(&self, f: &mut dyn FnMut(&mut State)) -> Result<()> {
        self.cas(None, f)
    }

    fn change_as_leader(&self, leader: &str, f: &mut dyn FnMut(&mut State)) -> Result<()> {
        self.cas(Some(leader), f)
    }
}

impl EtcdRecord {
    /// Read, change, and write back if the record is unchanged since the
    /// read (and, with `leader`, the leader key still names it).
    fn cas(&self, leader: Option<&str>, f: &mut dyn FnMut(&mut State)) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut st, rev) = self.read()?;
            f(&mut st);
            let text = serde_json::to_string(&st).map_err(|e| Error::Other(e.to_string()))?;
            // Absent keys have mod revision 0, so one comparison covers both.
            let mut compare = vec![
                json!({ "key": b64(&self.key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string() }),
            ];
            if let Some(l) = leader {
                compare.push(
                    json!({ "key": b64(&self.leader_key), "target": "VALUE", "result": "EQUAL", "value": b64(l) }),
                );
            }
            let txn = json!({
                "compare": compare,
                "success": [{ "request_put": { "key": b64(&self.key), "value": b64(&text) } }],
                "failure": [{ "request_range": { "key": b64(&self.leader_key) } }],
            });
            let v = self.gw.call_blocking("/v3/kv/txn", &txn)?;
            if v["succeeded"].as_bool() == Some(true) {
                return Ok(());
            }
            if let Some(l) = leader {
                let kv = &v["responses"][0]["response_range"]["kvs"][0];
                let holder = kv["value"].as_str().and_then(unb64);
                if holder.as_deref() != Some(l) {
                    return Err(Error::Refused(format!(
                        "{l} no longer holds the leader lease (etcd names {}); only the leader may change this",
                        holder.as_deref().unwrap_or("no one")
                    )));
                }
            }
        }
        Err(Error::Other(format!(
            "the cluster's record in etcd changed under us {CAS_ATTEMPTS} times in a row; try again"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A listener that answers a range with an empty record and a txn as
    /// etcd does when the leader key names someone else; returns what the
    /// txn asked for.
    fn etcd_where_the_leader_is(holder: &'static str) -> (Arc<Gateway>, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = std::thread::spawn(move || {
            let mut txn = String::new();
            for s in l.incoming().take(2) {
                let mut s = s.unwrap();
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if req.starts_with("POST /v3/kv/txn") {
                    txn = req;
                    json!({ "succeeded": false, "responses": [{ "response_range": { "kvs": [{ "value": b64(holder) }] } }] })
                } else {
                    json!({ "kvs": [] })
                }
                .to_string();
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
            txn
        });
        (Gateway::plain(&[format!("http://{addr}")]).unwrap(), seen)
    }

    #[test]
    fn a_leader_whose_key_names_another_node_cannot_write_the_record() {
        let (gw, seen) = etcd_where_the_leader_is("pg-2");
        let r = EtcdRecord::new(gw, "/pgrepl", "c");
        let e = r.change_as_leader("pg-1", &mut |st| st.sync_set = vec!["pg-3".into()]).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        assert!(e.to_string().contains("pg-1 no longer holds the leader lease (etcd names pg-2)"), "{e}");
        let txn = seen.join().unwrap();
        let body: serde_json::Value = serde_json::from_str(txn.split_once("\r\n\r\n").unwrap().1).unwrap();
        let leader = &body["compare"][1];
        assert_eq!(
            (leader["key"].as_str(), leader["value"].as_str()),
            (Some(b64("/pgrepl/c/leader").as_str()), Some(b64("pg-1").as_str()))
        );
    }
}
