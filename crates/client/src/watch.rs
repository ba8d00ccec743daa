//! Streams that survive failover: [`resume`] reopens a server stream on another server when its
//! server fails, from the last position the caller saw, so nothing is missed (the server sends
//! everything after that position again) and nothing is delivered twice (positions before it are
//! not asked for).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::ServerChannel;
use futures_util::stream::{self, Stream, StreamExt};
use tonic::Status;

use crate::call::{classify, CallError, Client, Idempotency, Verdict};

/// A stream of items, or the error that ended it.
pub type Resumable<T> = Pin<Box<dyn Stream<Item = Result<T, CallError>> + Send>>;

/// After this many streams in a row that a server ends cleanly without sending anything, that
/// server counts as failed (a server shutting down ends its streams).
const EMPTY_ENDS_BEFORE_FAILOVER: u32 = 3;

struct State<P, S, Open, M> {
    client: Client,
    position: P,
    open: Open,
    mark: M,
    stream: Option<(Option<(SocketAddr, u64)>, S)>,
    empty_ends: u32,
    done: bool,
}

/// What an item of a resumable stream means for resuming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark<P> {
    /// Resume after this position if the stream breaks from here on.
    Position(P),
    /// The position stays as it was (a heartbeat, a note).
    Keep,
    /// The server says it is going away (shutting down): the stream is left at once, the server
    /// counts as failed, and the stream is opened again elsewhere from the last position, without
    /// waiting for the server to end it.
    Leave(String),
}

/// Opens a stream with `open(channel, position)` (starting at `from`) and yields its items. When
/// the stream's server fails, it is quarantined and the stream is opened again — on another server
/// if there is one — from the last position `position_of` gave (items it gives `None` for, such
/// as a "started" marker, leave the position as it was). A status the server sends on purpose (e.g.
/// `NOT_FOUND`) ends the stream with that error; so does finding no server at all.
///
/// Opening is an idempotent call: it follows the client's deadline, timeouts and failover.
pub fn resume<T, P, S, Open, Fut, Pos>(client: &Client, from: P, open: Open, mut position_of: Pos) -> Resumable<T>
where
    T: Send + 'static,
    P: Clone + Send + Sync + 'static,
    S: Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
    Open: FnMut(ServerChannel, P) -> Fut + Send + 'static,
    Fut: Future<Output = Result<S, Status>> + Send,
    Pos: FnMut(&T) -> Option<P> + Send + 'static,
{
    resume_marked(client, from, open, move |item: &T| match position_of(item) {
        Some(position) => Mark::Position(position),
        None => Mark::Keep,
    })
}

/// [`resume`], where `mark` also says when the server announces it is going away
/// ([`Mark::Leave`]): the item is still yielded, then the stream moves to another server at once.
pub fn resume_marked<T, P, S, Open, Fut, M>(client: &Client, from: P, open: Open, mark: M) -> Resumable<T>
where
    T: Send + 'static,
    P: Clone + Send + Sync + 'static,
    S: Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
    Open: FnMut(ServerChannel, P) -> Fut + Send + 'static,
    Fut: Future<Output = Result<S, Status>> + Send,
    M: FnMut(&T) -> Mark<P> + Send + 'static,
{
    let state = State { client: client.clone(), position: from, open, mark, stream: None, empty_ends: 0, done: false };
    Box::pin(stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let Some((server, stream)) = st.stream.as_mut() else {
                let position = st.position.clone();
                let open = &mut st.open;
                match st.client.call(Idempotency::Idempotent, |channel| open(channel, position.clone())).await {
                    Ok(stream) => st.stream = Some((st.client.current_link(), stream)),
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
                continue;
            };
            let server = *server;
            match stream.next().await {
                Some(Ok(item)) => {
                    match (st.mark)(&item) {
                        Mark::Position(position) => st.position = position,
                        Mark::Keep => {}
                        Mark::Leave(reason) => {
                            st.stream = None;
                            tracing::info!(server = ?server.map(|s| s.0), %reason, "server going away; watching on another server");
                            if let Some(server) = server {
                                st.client.report_failure(server, &format!("going away: {reason}"));
                            }
                        }
                    }
                    st.empty_ends = 0;
                    return Some((Ok(item), st));
                }
                Some(Err(status)) => {
                    st.stream = None;
                    match classify(status) {
                        Verdict::Answer(status) => {
                            st.done = true;
                            let server = server.map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |s| s.0);
                            return Some((Err(CallError::Status { server, status }), st));
                        }
                        Verdict::NotSent(cause) | Verdict::Unknown(cause) => {
                            tracing::warn!(server = ?server.map(|s| s.0), error = %cause, "watch broke; resuming on another server");
                            if let Some(server) = server {
                                st.client.report_failure(server, &cause);
                            }
                        }
                    }
                }
                None => {
                    st.stream = None;
                    st.empty_ends += 1;
                    if st.empty_ends >= EMPTY_ENDS_BEFORE_FAILOVER {
                        st.empty_ends = 0;
                        if let Some(server) = server {
                            st.client.report_failure(server, "ends watches without sending anything");
                        }
                    }
                }
            }
        }
    }))
}
