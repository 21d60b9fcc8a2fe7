//! The per-node HTTP API, served by the agent: one listener per node
//! (`[[node]] api_port`) so a load balancer checks each node on its own
//! port, as people do with Patroni. GET answers come from the monitor's
//! latest snapshot ([`health`]); POST runs a move ([`write`]).
//!
//! HTTP is hyper's (server side, HTTP/1.1 only): a parser that has seen
//! the internet is worth more here than the 200 lines it replaces. Around
//! it, the limits a health endpoint needs when a client misbehaves:
//! headers up to 8 kB, bodies up to 64 kB, 5 s to send the headers and
//! 10 s for the body, one request per connection, and a cap on
//! connections that sheds the idle ones first ([`conns`]).

mod conns;
pub(crate) mod health;
mod https;
mod ui;
mod write;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::agent::dashboard::Dashboard;
use crate::agent::Stop;
use crate::config::Node;
use crate::domain::time::now_unix;
use crate::observe::snapshot::Latest;
use crate::output::Output;
use crate::store::ctx::Ctx;
use conns::{Conns, Slot};
use health::Answer;

/// Connections held at once, over every node's listener. Idle ones are
/// shed to make room, so this bounds memory, not who gets served.
const MAX_CONNECTIONS: usize = 256;
/// Time to send the request line and headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body (the write endpoints take small JSON).
const MAX_BODY: usize = 64 * 1024;
/// hyper's read buffer, which bounds the request head: its minimum.
const MAX_HEAD: usize = 8 * 1024;

/// What every connection of this agent's API shares.
pub(crate) struct Server {
    ctx: Arc<Ctx>,
    latest: Latest,
    stale: f64,
    out: Output,
    conns: Arc<Conns>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    dash: Arc<Dashboard>,
    streams: ui::Streams,
    /// Ends the dashboard's streams when the agent stops.
    stop: Stop,
}

/// An answer's body: whole, or the dashboard's live stream.
type Body = Either<Full<Bytes>, ui::Stream>;

impl Server {
    /// The API's shared part, or `None` (said why) when it cannot serve
    /// as configured: HTTPS asked for with a certificate that will not load.
    pub(crate) fn new(
        ctx: Arc<Ctx>,
        latest: Latest,
        dash: Arc<Dashboard>,
        out: Output,
        stop: Stop,
    ) -> Option<Arc<Server>> {
        let tls = match (&ctx.cfg.tls, ctx.cfg.api.tls) {
            (Some(t), true) => match https::acceptor(t) {
                Ok(a) => Some(a),
                Err(e) => {
                    out.info(format!("error: the API is not served: [api] tls = true, but {e}"));
                    return None;
                }
            },
            _ => None,
        };
        let stale = health::stale_after(ctx.cfg.monitor.interval);
        let conns = Conns::new(MAX_CONNECTIONS);
        Some(Arc::new(Server { ctx, latest, stale, out, conns, tls, dash, streams: ui::Streams::new(), stop }))
    }

    /// Bind every node's listener (saying where, or why not).
    pub(crate) async fn bind(&self, nodes: &[Node]) -> Vec<(TcpListener, String)> {
        let mut bound = Vec::new();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let writes = match self.ctx.cfg.api.write {
            crate::config::WriteAccess::Token(_) => "; write endpoints on (token)",
            _ => "",
        };
        for node in nodes {
            let addr = (self.ctx.cfg.api.listen.clone(), node.api_port);
            match TcpListener::bind(addr.clone()).await {
                Ok(l) => {
                    self.out.info(format!("{}: API on {scheme}://{}:{}/{writes}", node.name, addr.0, addr.1));
                    bound.push((l, node.name.clone()));
                }
                Err(e) => self.out.info(format!("{}: cannot serve the API on {}:{}: {e}", node.name, addr.0, addr.1)),
            }
        }
        bound
    }

    /// Serve one node's listener until a stop is requested.
    pub(crate) async fn accept(self: Arc<Self>, l: TcpListener, node: String, mut stop: Stop) {
        let node: Arc<str> = node.into();
        loop {
            let (s, peer) = tokio::select! {
                r = l.accept() => match r {
                    Ok(c) => c,
                    Err(_) => {
                        // Out of file descriptors, most likely: retrying at
                        // once would spin; the shed connections free some.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.requested() => return,
            };
            // Every slot serves a request: this one is turned away.
            let Some((slot, shed)) = self.conns.admit() else { continue };
            let (me, node) = (self.clone(), node.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = me.connection(s, peer, node, slot) => {}
                    // Shed to make room for a newer connection.
                    _ = shed => {}
                }
            });
        }
    }

    async fn connection(self: &Arc<Self>, s: TcpStream, peer: SocketAddr, node: Arc<str>, slot: Slot) {
        let slot = Arc::new(slot);
        match &self.tls {
            None => self.http(TokioIo::new(s), peer, node, slot, false).await,
            Some(acceptor) => {
                let Ok(Some((stream, client_cert))) =
                    tokio::time::timeout(HEADER_TIMEOUT, https::handshake(acceptor, s)).await
                else {
                    return;
                };
                self.http(TokioIo::new(stream), peer, node, slot, client_cert).await
            }
        }
    }

    async fn http<I>(self: &Arc<Self>, io: I, peer: SocketAddr, node: Arc<str>, slot: Arc<Slot>, client_cert: bool)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let me = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            slot.busy();
            let (me, node) = (me.clone(), node.clone());
            async move { Ok::<_, Infallible>(me.respond(req, peer, &node, client_cert).await) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.keep_alive(false).max_buf_size(MAX_HEAD).timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
        let _ = http.serve_connection(io, svc).await;
    }

    async fn respond(&self, req: Request<Incoming>, peer: SocketAddr, node: &str, client_cert: bool) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path();
        if method == Method::GET && path == "/ui/events" {
            return self.events(&req);
        }
        let a = match method {
            Method::GET | Method::HEAD if path == "/ui" => {
                Answer { code: 308, content_type: "text/plain", body: String::new(), headers: &[("Location", "/ui/")] }
            }
            Method::GET | Method::HEAD if path.starts_with("/ui/") => ui::asset(path).unwrap_or_else(|| {
                Answer::json(404, json!({"reason": format!("no file {path}; the dashboard is /ui/")}))
            }),
            Method::GET | Method::HEAD | Method::OPTIONS => {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let snap = self.latest.borrow().clone();
                health::answer(node, target, snap.as_deref(), now_unix(), self.stale)
            }
            Method::POST => self.write(req, peer, node, client_cert).await,
            _ => Answer::json(405, json!({"reason": "only GET, HEAD, OPTIONS and POST"})),
        };
        let body = if method == Method::HEAD { Bytes::new() } else { Bytes::from(a.body) };
        response(a.code, a.content_type, a.headers, Either::Left(Full::new(body)))
    }

    /// `GET /ui/events`: the dashboard's live feed.
    fn events(&self, req: &Request<Incoming>) -> Response<Body> {
        let last = req.headers().get("Last-Event-ID").and_then(|v| v.to_str().ok());
        match ui::events(&self.dash, &self.streams, last, self.stop.clone()) {
            Some(stream) => response(200, "text/event-stream", ui::HEADERS, Either::Right(stream)),
            None => {
                let a =
                    Answer::json(503, json!({"reason": format!("{} dashboards are open: close one", ui::MAX_STREAMS)}));
                response(a.code, a.content_type, a.headers, Either::Left(Full::new(Bytes::from(a.body))))
            }
        }
    }

    /// A POST: authorised first, then its body read (bounded in size and
    /// time) and checked, and only then run.
    async fn write(&self, req: Request<Incoming>, peer: SocketAddr, node: &str, client_cert: bool) -> Answer {
        let path = req.uri().path().to_string();
        let auth = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
        if let Err(denied) = write::authorize(&self.ctx.cfg.api.write, auth, client_cert) {
            // The peer and the reason; never what was sent as a token.
            self.out.info(format!("warning: {node}: API refused POST {path} from {peer}: {}", denied.reason()));
            return denied.answer();
        }
        let body = Limited::new(req.into_body(), MAX_BODY).collect();
        let bytes = match tokio::time::timeout(write::BODY_TIMEOUT, body).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Answer::json(413, json!({"ok": false, "error": format!("the body is over {MAX_BODY} bytes")}))
            }
            Ok(Err(e)) => return Answer::json(400, json!({"ok": false, "error": format!("reading the body: {e}")})),
            Err(_) => return Answer::json(408, json!({"ok": false, "error": "the body did not arrive in time"})),
        };
        match write::parse(&path, &bytes, &self.ctx.cfg, node) {
            Ok(job) => {
                self.out.info(format!("{node}: API: POST {path} from {peer}"));
                write::run(self.ctx.clone(), job).await
            }
            Err(why) => Answer::json(400, json!({"ok": false, "error": why})),
        }
    }
}

/// A response with these headers (the builder fails only on a header
/// that is not valid, and ours are constants).
fn response(code: u16, content_type: &str, headers: &[(&str, &str)], body: Body) -> Response<Body> {
    let mut r = Response::builder().status(code).header("Content-Type", content_type);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(body).unwrap_or_else(|_| Response::new(Either::Left(Full::new(Bytes::new()))))
}
