//! A probe that writes to every node directly, every 10 ms, and records
//! each acknowledgement on the monotonic clock with the timeline the
//! server wrote it on. A write acknowledged on an older timeline after one
//! on a newer timeline is the client-visible form of two primaries: the
//! old one took a write after the new one had taken over.

// Shared by test binaries and benchmarks; each uses a part.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The table the probe writes to and the function it writes through;
/// create them on the primary first. The function writes only where the
/// server is not in recovery, so standbys answer NULL instead of logging a
/// read-only error a hundred times a second.
pub const SETUP: &str = "CREATE TABLE IF NOT EXISTS probe (node int, id bigint, PRIMARY KEY (node, id)); \
    CREATE OR REPLACE FUNCTION probe_write(n int, i bigint) RETURNS text LANGUAGE plpgsql AS $$ \
    BEGIN \
      IF pg_is_in_recovery() THEN RETURN NULL; END IF; \
      INSERT INTO probe (node, id) VALUES (n, i); \
      RETURN substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8); \
    END $$";

/// One acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    pub at: Instant,
    /// The node's index in the list the probe was started with.
    pub node: usize,
    pub id: i64,
    pub timeline: u32,
}

pub struct Probe {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    /// Write to each of these `(host, port)`s as `login` (libpq `user=…
    /// password=… dbname=…`). A write or a connection attempt not answered
    /// within a second is given up, as a client with a timeout does.
    pub fn start(nodes: &[(String, u16)], login: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acks.clone());
        let nodes: Vec<String> =
            nodes.iter().map(|(h, p)| format!("host={h} port={p} {login} connect_timeout=1")).collect();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for (node, conn) in nodes.into_iter().enumerate() {
                    set.spawn(write_to(node, conn, s.clone(), a.clone()));
                }
                while set.join_next().await.is_some() {}
            });
        });
        Probe { stop, acks, thread: Some(thread) }
    }

    /// How many writes were acknowledged so far.
    pub fn count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Stop, and return every acknowledgement in the order they arrived.
    pub fn finish(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let mut acks = self.acks.lock().unwrap().clone();
        acks.sort_by_key(|a| a.at);
        acks
    }
}

/// The acknowledgements that arrived on an older timeline than one already
/// acknowledged before them: each is a write the old primary took after
/// the new one had taken over.
pub fn stale(acks: &[Ack]) -> Vec<Ack> {
    let mut newest = 0;
    let mut out = Vec::new();
    for a in acks {
        if a.timeline < newest {
            out.push(a.clone());
        }
        newest = newest.max(a.timeline);
    }
    out
}

/// The first write acknowledged after `t` by a node other than the one
/// that acknowledged the last write before `t`: the new primary's first.
pub fn first_elsewhere_after(acks: &[Ack], t: Instant) -> Option<&Ack> {
    let before = acks.iter().rev().find(|a| a.at <= t).map(|a| a.node);
    acks.iter().find(|a| a.at > t && Some(a.node) != before)
}

const TIMEOUT: Duration = Duration::from_secs(1);

async fn write_to(node: usize, conn: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Vec<Ack>>>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut id = 0i64;
    let insert = "SELECT probe_write($1, $2)";
    while !stop.load(Ordering::SeqCst) {
        // The probe's pace (every 10 ms per node), not synchronisation.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match tokio::time::timeout(TIMEOUT, tokio_postgres::connect(&conn, tokio_postgres::NoTls)).await {
                Ok(Ok((c, connection))) => {
                    tokio::spawn(connection);
                    Some(c)
                }
                _ => None,
            };
            continue;
        }
        id += 1;
        let n = node as i32;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&n, &id];
        let c = client.as_ref().unwrap();
        match tokio::time::timeout(TIMEOUT, c.query_one(insert, &params)).await {
            Ok(Ok(row)) => {
                // NULL from a standby: keep the connection, it may be promoted.
                if let Some(tl) = row.get::<_, Option<String>>(0) {
                    let timeline = u32::from_str_radix(&tl, 16).unwrap_or(0);
                    acks.lock().unwrap().push(Ack { at: Instant::now(), node, id, timeline });
                }
            }
            // An error from the server keeps the connection; a timeout
            // leaves a write in flight: drop it.
            Ok(Err(e)) if e.code().is_some() => {}
            _ => client = None,
        }
    }
}
