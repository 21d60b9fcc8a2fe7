//! The dashboard task: feeds every snapshot to the dashboard's model
//! ([`Board`]) and hands the frame it makes to every open page. Pages
//! subscribe through the API (`GET /ui/events`); the model is built once
//! per snapshot, however many pages watch.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::agent::{next_snapshot, Stop};
use crate::observe::dashboard::Board;
use crate::observe::snapshot::Latest;

/// Frames queued for a page that reads slowly; past that it is dropped
/// and its browser reconnects (and is sent what it missed).
const QUEUE: usize = 16;

/// The dashboard's model and its subscribers.
pub(crate) struct Dashboard {
    board: Mutex<Board>,
    frames: broadcast::Sender<Arc<str>>,
}

impl Dashboard {
    pub(crate) fn new(settings: serde_json::Value) -> Arc<Dashboard> {
        Arc::new(Dashboard { board: Mutex::new(Board::new(settings)), frames: broadcast::channel(QUEUE).0 })
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `init` frame for a page that has the samples up to `since`, and
    /// the frames after it. One lock: no update falls between the two.
    pub(crate) fn subscribe(&self, since: Option<u64>) -> (String, broadcast::Receiver<Arc<str>>) {
        let board = self.board();
        (board.init(since), self.frames.subscribe())
    }
}

/// Feed snapshots in until a stop is requested.
pub(crate) async fn run(dash: Arc<Dashboard>, mut latest: Latest, mut stop: Stop) {
    while next_snapshot(&mut latest, &mut stop).await {
        let Some(snap) = latest.borrow_and_update().clone() else { continue };
        let mut board = dash.board();
        // Under the board's lock, as `subscribe`: a page that opens now is
        // either counted here or gets this snapshot in its init frame.
        if let Some(frame) = board.push(snap, dash.frames.receiver_count() > 0) {
            let _ = dash.frames.send(frame.into());
        }
    }
}
