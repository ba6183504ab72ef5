//! The live stream of server-sent events: changed cutovers, the tails, each new output line.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use tokio::sync::{broadcast, watch};

use super::{App, Snapshot};

/// The live stream: a `cutover` event with one cutover's page data whenever it changed (each
/// at connect), `tails` with every pair's last lines (at connect and after a gap), `output`
/// with each new line.
pub(super) async fn events(State(app): State<Arc<App>>) -> impl IntoResponse {
    let snapshot = app.snapshot.clone();
    let (lines, tails) = match app.tails.lock() {
        // Subscribing under the lock: no line is both in the snapshot and sent again.
        Ok(t) => (app.lines.subscribe(), t.snapshot()),
        Err(_) => (app.lines.subscribe(), String::from("[]")),
    };
    let mut state = Stream {
        app,
        snapshot,
        lines,
        pending: VecDeque::new(),
        sent: Vec::new(),
    };
    state.queue_changed();
    state
        .pending
        .push_back(SseEvent::default().event("tails").data(tails));
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let ev = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(ev), s))
    });
    (
        // A reverse proxy must pass the stream on as it comes, not buffer it.
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
}

pub(super) struct Stream {
    pub(super) app: Arc<App>,
    pub(super) snapshot: watch::Receiver<Snapshot>,
    pub(super) lines: broadcast::Receiver<Arc<String>>,
    pub(super) pending: VecDeque<SseEvent>,
    /// What this page was sent of each cutover.
    pub(super) sent: Vec<Arc<String>>,
}

impl Stream {
    pub(super) async fn next(&mut self) -> Option<SseEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        tokio::select! {
            changed = self.snapshot.changed() => {
                changed.ok()?;
                self.queue_changed();
                // Nothing this page has not seen: a keep-alive comment, the stream goes on.
                Some(self.pending.pop_front().unwrap_or_else(|| SseEvent::default().comment("")))
            }
            line = self.lines.recv() => match line {
                Ok(l) if l.as_str() == "reset" => Some(self.resync()),
                Ok(l) => Some(SseEvent::default().event("output").data(l.as_str())),
                // Too slow a reader: send the tails again rather than a gap.
                Err(broadcast::error::RecvError::Lagged(_)) => Some(self.resync()),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }
    }

    /// Queues the cutovers whose data differs from what this page was sent.
    pub(super) fn queue_changed(&mut self) {
        let snap = self.snapshot.borrow_and_update().clone();
        for (i, json) in snap.iter().enumerate() {
            if self.sent.get(i).is_some_and(|s| Arc::ptr_eq(s, json)) {
                continue;
            }
            if i < self.sent.len() {
                self.sent[i] = json.clone();
            } else {
                self.sent.push(json.clone());
            }
            self.pending.push_back(
                SseEvent::default()
                    .event("cutover")
                    .data(format!("{{\"cutover\":{i},\"data\":{json}}}")),
            );
        }
    }

    pub(super) fn resync(&mut self) -> SseEvent {
        let data = match self.app.tails.lock() {
            Ok(t) => {
                self.lines = self.app.lines.subscribe();
                t.snapshot()
            }
            Err(_) => String::from("[]"),
        };
        SseEvent::default().event("tails").data(data)
    }
}
