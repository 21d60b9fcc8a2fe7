//! A client that commits sequential ids, shared by the integration tests
//! and the benchmarks: it records every acknowledgement (when, and which
//! server gave it), so a test can tell what was lost and how long writes
//! stopped.

// Shared by test binaries and benchmarks; each uses a part.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A client that commits sequential ids through a libpq multi-host string
/// with target_session_attrs=read-write, reconnecting after errors.
pub struct Writer {
    stop: Arc<AtomicBool>,
    pub acked: Arc<Mutex<Vec<i64>>>,
    /// When each acknowledgement arrived (for the longest write gap), and
    /// which server (`address:port`) gave it.
    acked_at: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Through the nodes at these `(host, port)`s. With `timeout`, a write
    /// not answered within it is given up (and the connection dropped), as
    /// an application with a client-side timeout does: a frozen server
    /// never answers nor closes. It is the connect timeout too.
    pub fn start_at(nodes: &[(String, u16)], timeout: Option<Duration>) -> Writer {
        Writer::start_as(nodes, "user=app password=app-secret dbname=app", timeout)
    }

    /// [`Writer::start_at`] with other credentials (`login`: libpq
    /// `user=… password=… dbname=…`), into a table `w (id bigint primary key)`.
    pub fn start_as(nodes: &[(String, u16)], login: &str, timeout: Option<Duration>) -> Writer {
        let connect_timeout = timeout.unwrap_or(Duration::from_secs(2));
        // One string per host, tried in order, each within the timeout, as
        // libpq does with a multi-host string: its connect_timeout covers
        // the whole login at each host, while tokio-postgres's covers only
        // the socket (a frozen server accepts the socket, then never
        // answers the login).
        let hosts: Vec<String> = nodes
            .iter()
            .map(|(h, p)| {
                format!(
                    "host={h} port={p} {login} target_session_attrs=read-write connect_timeout={}",
                    connect_timeout.as_secs().max(1)
                )
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let acked_at = Arc::new(Mutex::new(Vec::new()));
        let (s, a, at) = (stop.clone(), acked.clone(), acked_at.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut client: Option<tokio_postgres::Client> = None;
                let mut id = 0i64;
                while !s.load(Ordering::SeqCst) {
                    if client.as_ref().is_none_or(|c| c.is_closed()) {
                        client = connect_first(&hosts, connect_timeout).await;
                        if client.is_none() {
                            // Pace reconnect attempts; the loop re-checks for a primary.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        continue;
                    }
                    id += 1;
                    let this = id;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&this];
                    let insert = client.as_ref().unwrap().query_opt(
                        "INSERT INTO w (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING coalesce(host(inet_server_addr()), 'socket') || ':' || coalesce(inet_server_port(), 0)",
                        &params,
                    );
                    let r: Result<Option<tokio_postgres::Row>, ()> = match timeout {
                        Some(t) => tokio::time::timeout(t, insert).await.map_err(|_| ()).and_then(|r| r.map_err(|_| ())),
                        None => insert.await.map_err(|_| ()),
                    };
                    match r {
                        Ok(row) => {
                            let server = row.map_or_else(String::new, |r| r.get(0));
                            a.lock().unwrap().push(id);
                            at.lock().unwrap().push((std::time::Instant::now(), server));
                        }
                        Err(_) => client = None,
                    }
                    // Pacing of the writer (about 200 commits a second), not synchronisation.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        });
        Writer { stop, acked, acked_at, thread: Some(thread) }
    }

    /// The longest time between two acknowledged writes so far: the write
    /// unavailability a client saw.
    pub fn longest_gap(&self) -> Duration {
        let at = self.acked_at.lock().unwrap();
        at.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or_default()
    }

    /// The longest time between two acknowledged writes from the last
    /// acknowledgement before `t` on: the write unavailability of a move
    /// made at `t`.
    pub fn longest_gap_since(&self, t: std::time::Instant) -> Duration {
        let at = self.acked_at.lock().unwrap();
        let from = at.iter().rposition(|(a, _)| *a <= t).unwrap_or(0);
        at[from..].windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or_default()
    }

    /// The first write acknowledged after `t` by a server other than the
    /// one that acknowledged the last write before `t`: when, and by which.
    pub fn first_ack_elsewhere_after(&self, t: std::time::Instant) -> Option<(std::time::Instant, String)> {
        let at = self.acked_at.lock().unwrap();
        let before = at.iter().rev().find(|(a, _)| *a <= t).map(|(_, s)| s.clone());
        at.iter().find(|(a, s)| *a > t && Some(s) != before.as_ref()).cloned()
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub fn wait_more(&self, n: usize) {
        let target = self.count() + n;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while self.count() < target {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {n} more acknowledged writes");
            // The poll interval of a condition wait.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn finish(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// The first of these hosts that takes a read-write login within `timeout`.
async fn connect_first(hosts: &[String], timeout: Duration) -> Option<tokio_postgres::Client> {
    for conn in hosts {
        if let Ok(Ok((c, connection))) =
            tokio::time::timeout(timeout, tokio_postgres::connect(conn, tokio_postgres::NoTls)).await
        {
            tokio::spawn(connection);
            return Some(c);
        }
    }
    None
}
