//! A watch stream, independent of the front end: a tracked task per watcher
//! follows the feed and sends [`WatchMessage`]s, which gRPC (`grpc/watch.rs`)
//! and server-sent events (`http/watch.rs`) put on the wire.
//!
//! On shutdown every watcher gets [`WatchMessage::GoingAway`] and its stream
//! ends, so clients reconnect (to any server) with their last position.

use std::time::Duration;

use dugong_store::{Kind, Position, Record};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::feed::Step;
use crate::metrics as m;
use crate::state::AppState;

/// Messages a watcher may hold unsent before the stream waits for the client.
const QUEUE: usize = 256;
/// How long the goodbye may wait for room in a full queue.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// What a watch stream carries.
#[derive(Debug, Clone)]
pub enum WatchMessage {
    /// First: changes after `position` follow.
    Started {
        position: String,
    },
    Change {
        position: String,
        kind: Kind,
        key: String,
        record: Option<Record>,
    },
    /// Re-read everything (or `kind`, when only it was emptied), then follow.
    Reset {
        reason: String,
        position: String,
    },
    /// Shutting down: reconnect with the last position. The stream ends.
    GoingAway {
        reason: String,
    },
    /// The database failed: reconnect later or elsewhere. The stream ends.
    Failed {
        reason: String,
    },
}

/// Starts a watch at `position` (empty: now) for `kinds` (empty: all).
pub async fn open(
    state: &AppState,
    position: &str,
    kinds: Vec<Kind>,
) -> Result<mpsc::Receiver<WatchMessage>, ApiError> {
    if state.drain.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    let requested = match position {
        "" => None,
        text => Some(Position::parse(text)?),
    };
    let (watcher, start, reset) = state.feed.watch(requested, kinds).await?;
    let (tx, rx) = mpsc::channel(QUEUE);
    state.tasks.spawn(pump(state.clone(), watcher, start, reset, tx));
    Ok(rx)
}

/// Counts open watches while alive.
struct Open;

impl Open {
    fn new() -> Open {
        metrics::gauge!(m::WATCHES_OPEN).increment(1.0);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(m::WATCHES_OPEN).decrement(1.0);
    }
}

async fn pump(
    state: AppState,
    mut watcher: crate::feed::Watcher,
    start: Position,
    reset: Option<String>,
    tx: mpsc::Sender<WatchMessage>,
) {
    let _open = Open::new();
    let start = start.to_string();
    if !send(&state, &tx, WatchMessage::Started { position: start.clone() }).await {
        return goodbye(&state, &tx).await;
    }
    if let Some(reason) = reset {
        if !send(&state, &tx, WatchMessage::Reset { reason, position: start }).await {
            return goodbye(&state, &tx).await;
        }
    }
    loop {
        let next = tokio::select! {
            _ = state.drain.cancelled() => return goodbye(&state, &tx).await,
            _ = tx.closed() => return,
            next = watcher.next() => next,
        };
        let changes = match next {
            Ok(Step::Changes(changes)) => changes,
            Ok(Step::Reset { reason, pos }) => {
                let position = watcher.position(pos).to_string();
                if !send(&state, &tx, WatchMessage::Reset { reason, position }).await {
                    return goodbye(&state, &tx).await;
                }
                continue;
            }
            Err(e) => {
                let _ = tx.send(WatchMessage::Failed { reason: e.to_string() }).await;
                return;
            }
        };
        for c in changes {
            let position = watcher.position(c.pos).to_string();
            let message = match c.key {
                Some(key) => WatchMessage::Change { position, kind: c.kind, key, record: c.record },
                None => WatchMessage::Reset {
                    reason: format!("all {} changed at once: re-read them", c.kind.as_str()),
                    position,
                },
            };
            if !send(&state, &tx, message).await {
                return goodbye(&state, &tx).await;
            }
            metrics::counter!(m::WATCH_CHANGES).increment(1);
        }
    }
}

/// Sends unless the client left or shutdown began; `false` then.
async fn send(state: &AppState, tx: &mpsc::Sender<WatchMessage>, message: WatchMessage) -> bool {
    tokio::select! {
        sent = tx.send(message) => sent.is_ok(),
        _ = state.drain.cancelled() => false,
    }
}

/// Tells a watcher to reconnect, when shutting down (a client that left
/// needs no goodbye).
async fn goodbye(state: &AppState, tx: &mpsc::Sender<WatchMessage>) {
    if state.drain.is_cancelled() && !tx.is_closed() {
        let message =
            WatchMessage::GoingAway { reason: "the server is shutting down: reconnect with your last position".into() };
        let _ = tokio::time::timeout(GOODBYE_WAIT, tx.send(message)).await;
    }
}
