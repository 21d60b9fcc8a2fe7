//! The dashboard's page and its live feed: `GET /ui/` (one HTML page, its
//! script and style, embedded in the binary; nothing is fetched from
//! anywhere else) and `GET /ui/events` (Server-Sent Events).
//!
//! The page is read-only unless the write endpoints are on; then its
//! switchover, pause and resume buttons POST to this same API with the
//! token the user pastes (kept in the tab's sessionStorage only).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::{broadcast, mpsc};

use super::health::Answer;
use crate::agent::dashboard::Dashboard;
use crate::agent::Stop;
use crate::observe::dashboard::KEEPALIVE;

/// Pages watching at once, per agent: each holds a connection, and the
/// health checks must always find one free.
pub(super) const MAX_STREAMS: usize = 64;
/// A comment this often keeps an idle stream open and finds dead clients.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Only this page's own files, scripts and connections: an injected
/// string can run nothing, and no other site can frame the page.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The headers every dashboard answer carries.
pub(super) const HEADERS: &[(&str, &str)] = &[
    ("Content-Security-Policy", POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
];

/// The page's static files, or `None` for a path that is not one.
pub(super) fn asset(path: &str) -> Option<Answer> {
    let (content_type, body) = match path {
        "/ui/" | "/ui/index.html" => ("text/html; charset=utf-8", INDEX),
        "/ui/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/ui/app.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(Answer { code: 200, content_type, body: body.to_string(), headers: HEADERS })
}

/// A live `text/event-stream` body: frames from a channel the feeding task fills.
pub(super) struct Stream(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Counts open streams; a place is given back when its feed ends.
pub(super) struct Streams(Arc<AtomicUsize>);

impl Streams {
    pub(super) fn new() -> Streams {
        Streams(Arc::new(AtomicUsize::new(0)))
    }
}

struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Open a stream for a page that has the samples up to `last_event_id`;
/// `None` when [`MAX_STREAMS`] pages already watch.
pub(super) fn events(
    dash: &Arc<Dashboard>,
    streams: &Streams,
    last_event_id: Option<&str>,
    stop: Stop,
) -> Option<Stream> {
    if streams.0.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        streams.0.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    let place = Place(streams.0.clone());
    let since = last_event_id.and_then(|s| s.trim().parse().ok());
    let (init, frames) = dash.subscribe(since);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(feed(init, frames, tx, place, stop));
    Some(Stream(rx))
}

/// Send the init frame, then every update, until the page goes away (the
/// send fails), falls too far behind, or the agent stops.
async fn feed(
    init: String,
    mut frames: broadcast::Receiver<Arc<str>>,
    tx: mpsc::Sender<Bytes>,
    place: Place,
    mut stop: Stop,
) {
    let _place = place;
    if tx.send(Bytes::from(init)).await.is_err() {
        return;
    }
    let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
    keepalive.reset();
    loop {
        let next = tokio::select! {
            f = frames.recv() => match f {
                Ok(f) => Bytes::copy_from_slice(f.as_bytes()),
                // Lagged: end the stream; the browser reconnects with its
                // last id and is sent what it missed, in one frame.
                Err(_) => return,
            },
            _ = keepalive.tick() => Bytes::from_static(KEEPALIVE.as_bytes()),
            _ = stop.requested() => return,
        };
        if tx.send(next).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_and_nothing_else() {
        let page = asset("/ui/").unwrap();
        assert!(page.content_type.starts_with("text/html"));
        assert!(page.body.contains("app.js") && page.body.contains("app.css"));
        assert!(asset("/ui/app.js").unwrap().content_type.starts_with("text/javascript"));
        assert!(asset("/ui/../etc/passwd").is_none());
        assert!(asset("/ui/nope.js").is_none());
    }

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        for body in [INDEX, SCRIPT, STYLE] {
            for scheme in ["http://", "https://", "//cdn"] {
                // The SVG namespace is a name, not a fetch.
                let found = body.replace("http://www.w3.org/2000/svg", "");
                assert!(!found.contains(scheme), "the dashboard must not load from outside: {scheme}");
            }
        }
        assert!(!INDEX.contains("<script>"), "no inline script: the policy forbids it");
    }
}
