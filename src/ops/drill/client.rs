//! The drill's two observers, each a task: a writer that behaves like an
//! application (sequential ids at a fixed rate, into its own table, to
//! whichever node takes writes, with a client-side timeout), and a
//! watcher that asks every node every 100 ms whether it is writable.
//! Both only record; [`super::measure`] turns the records into figures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use super::measure::{Probe, Sample, Write};
use crate::config::Node;
use crate::store::ctx::Ctx;

/// The drill's table: created before the first round, dropped after.
pub(crate) const TABLE: &str = "pgrepl_drill";

/// How long a write or a login may take before the client gives up on it,
/// as an application with a timeout does (a frozen server never answers).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// The watcher's period, and how long it waits for each answer.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(90);

/// What the observers recorded, shared with the drill.
#[derive(Default)]
pub(crate) struct Records {
    pub writes: Vec<Write>,
    pub samples: Vec<Sample>,
    /// Why the writer found no node to write to, the last time it looked.
    pub no_writable: Option<String>,
}

/// The clock both observers and the drill read: seconds since `t0`.
#[derive(Clone, Copy)]
pub(crate) struct Clock(pub Instant);

impl Clock {
    pub(crate) fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// How the drill logs in. On one machine, as the superuser through each
/// node's socket, into `postgres`. Across hosts there is no superuser on
/// other hosts' nodes: it writes as an application does, over TCP as a
/// `[[database]]` owner, into that database.
#[derive(Clone)]
pub(crate) enum Login {
    Socket,
    Tcp { db: String, user: String, password: crate::config::Secret },
}

impl Login {
    /// The login for this cluster, or why there is none.
    pub(crate) fn for_cluster(ctx: &Ctx) -> crate::error::Result<Login> {
        if ctx.cfg.etcd.is_none() {
            return Ok(Login::Socket);
        }
        let db = ctx.cfg.databases.iter().find(|d| d.owner_password.is_some()).ok_or_else(|| {
            crate::error::Error::Refused(
                "across hosts the drill writes as an application does, as a [[database]] owner over TCP: add a [[database]] with owner and owner_password_file (`pgrepl init` writes one)".into(),
            )
        })?;
        let password = db.owner_password.clone().unwrap_or_else(|| crate::config::Secret::new(String::new()));
        Ok(Login::Tcp { db: db.name.clone(), user: db.owner.clone(), password })
    }

    /// Where the drill's table goes.
    pub(crate) fn db(&self) -> &str {
        match self {
            Login::Socket => "postgres",
            Login::Tcp { db, .. } => db,
        }
    }
}

/// A connection to `node` as `login`, within `limit`.
pub(crate) async fn connect(ctx: &Ctx, login: &Login, node: &Node, limit: Duration) -> Option<Client> {
    try_connect(ctx, login, node, limit).await.ok()
}

/// [`connect`], saying why not.
async fn try_connect(ctx: &Ctx, login: &Login, node: &Node, limit: Duration) -> Result<Client, String> {
    let late = || format!("no answer within {}s", limit.as_secs_f64());
    match login {
        Login::Socket => {
            let dir = ctx.layout.socket_dir();
            let c = crate::pg::sql::connect_socket(&dir, node.port, &ctx.runas.name, "postgres");
            tokio::time::timeout(limit, c).await.map_err(|_| late())?.map_err(|e| e.to_string())
        }
        Login::Tcp { db, user, password } => {
            let tls = ctx.cfg.tls.as_ref().map(crate::pg::tls::make_tls).transpose().map_err(|e| e.to_string())?;
            let c = crate::pg::sql::connect_tcp(&node.host, node.port, user, password, db, tls);
            tokio::time::timeout(limit, c).await.map_err(|_| late())?.map_err(|e| e.to_string())
        }
    }
}

/// The first node, in config order, that takes a login and answers as
/// writable: what libpq's `target_session_attrs=read-write` does.
async fn connect_writable(ctx: &Ctx, login: &Login) -> Result<(Client, String), String> {
    let mut why = Vec::new();
    for node in &ctx.cfg.nodes {
        let c = match try_connect(ctx, login, node, CLIENT_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                why.push(format!("{}: {e}", node.name));
                continue;
            }
        };
        let ro = tokio::time::timeout(CLIENT_TIMEOUT, c.query_one("SHOW transaction_read_only", &[])).await;
        match ro {
            Ok(Ok(row)) if row.get::<_, String>(0) == "off" => return Ok((c, node.name.clone())),
            Ok(Ok(_)) => why.push(format!("{}: read-only", node.name)),
            Ok(Err(e)) => why.push(format!("{}: {e}", node.name)),
            Err(_) => why.push(format!("{}: no answer", node.name)),
        }
    }
    Err(why.join("; "))
}

/// Write ids 1, 2, ... every `1 / rate` s until `stop` turns true.
pub(crate) async fn write(
    ctx: Arc<Ctx>,
    login: Login,
    rate: u32,
    clock: Clock,
    rec: Arc<Mutex<Records>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    // After a stall, carry on at the rate; never a burst of catch-up writes.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<(Client, String)> = None;
    let insert = format!("INSERT INTO {TABLE} (id) VALUES ($1)");
    let mut id = 0i64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if client.is_none() {
            match connect_writable(&ctx, &login).await {
                Ok(c) => client = Some(c),
                Err(why) => {
                    rec.lock().unwrap_or_else(|p| p.into_inner()).no_writable = Some(why);
                    continue;
                }
            }
        }
        let Some((c, server)) = &client else { continue };
        id += 1;
        let sent = clock.now();
        let r = tokio::time::timeout(CLIENT_TIMEOUT, c.execute(insert.as_str(), &[&id])).await;
        let result = match r {
            Ok(Ok(_)) => Ok((clock.now(), server.clone())),
            Ok(Err(e)) => Err(e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())),
            Err(_) => Err(format!("no answer from {server} within {}s", CLIENT_TIMEOUT.as_secs())),
        };
        if result.is_err() {
            client = None;
        }
        rec.lock().unwrap_or_else(|p| p.into_inner()).writes.push(Write { id, sent, result });
    }
}

/// Ask every node every 100 ms whether it is writable, and where its WAL is.
pub(crate) async fn watch(
    ctx: Arc<Ctx>,
    login: Login,
    clock: Clock,
    rec: Arc<Mutex<Records>>,
    mut stop: watch::Receiver<bool>,
) {
    let nodes = ctx.cfg.nodes.clone();
    let mut peers: Vec<Peer> =
        nodes.iter().map(|_| Peer { client: None, login: None, retry: Instant::now() }).collect();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    const ASK: &str = "SELECT NOT pg_is_in_recovery(), (CASE WHEN pg_is_in_recovery() \
        THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::int8";
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let at = clock.now();
        // Logins run in the background: a node slow to let us in (a TCP
        // login, a frozen server) never delays a sample of the others.
        for (peer, node) in peers.iter_mut().zip(&nodes) {
            if let Some(pending) = peer.login.take_if(|h| h.is_finished()) {
                peer.client = pending.await.ok().flatten();
            }
            if peer.client.is_none() && peer.login.is_none() && Instant::now() >= peer.retry {
                // A node that did not answer is asked again only every
                // second: a frozen server would otherwise pile up logins.
                peer.retry = Instant::now() + Duration::from_secs(1);
                let (ctx, login, node) = (ctx.clone(), login.clone(), node.clone());
                peer.login = Some(tokio::spawn(async move { connect(&ctx, &login, &node, LOGIN_TIMEOUT).await }));
            }
        }
        let asks = peers.iter_mut().map(|peer| async move {
            let c = peer.client.as_ref()?;
            let answer = match tokio::time::timeout(SAMPLE_TIMEOUT, c.query_one(ASK, &[])).await {
                Ok(Ok(row)) => {
                    Some(Probe { writable: row.get(0), lsn: row.get::<_, Option<i64>>(1).unwrap_or(0) as u64 })
                }
                _ => None,
            };
            if answer.is_none() {
                peer.client = None;
            }
            answer
        });
        let answers = futures_join_all(asks).await;
        let sample = Sample { at, nodes: nodes.iter().map(|n| n.name.clone()).zip(answers).collect() };
        rec.lock().unwrap_or_else(|p| p.into_inner()).samples.push(sample);
    }
}

/// The watcher's connection to one node.
struct Peer {
    client: Option<Client>,
    /// A login under way.
    login: Option<tokio::task::JoinHandle<Option<Client>>>,
    /// When a login may be tried again.
    retry: Instant,
}

/// How long a watcher's login may take (over TCP with scram and TLS).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Run futures at once and collect their outputs in order (the watcher's
/// per-node questions; a handful, so no crate for it).
async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in set.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
