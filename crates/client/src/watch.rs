//! Streams that survive failover: [`resume`] reopens a server stream on another server when its
//! server fails, from the last position the caller saw, so nothing is missed (the server sends
//! everything after that position again) and nothing is delivered twice (positions before it are
//! not asked for).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use futures_util::stream::{self, Stream, StreamExt};
use tonic::transport::Channel;
use tonic::Status;

use crate::call::{classify, CallError, Client, Idempotency, Verdict};

/// A stream of items, or the error that ended it.
pub type Resumable<T> = Pin<Box<dyn Stream<Item = Result<T, CallError>> + Send>>;

/// After this many streams in a row that a server ends cleanly without sending anything, that
/// server counts as failed (a server shutting down ends its streams).
const EMPTY_ENDS_BEFORE_FAILOVER: u32 = 3;

struct State<P, S, Open, Pos> {
    client: Client,
    position: P,
    open: Open,
    position_of: Pos,
    stream: Option<(Option<SocketAddr>, S)>,
    empty_ends: u32,
    done: bool,
}

/// Opens a stream with `open(channel, position)` (starting at `from`) and yields its items. When
/// the stream's server fails, it is quarantined and the stream is opened again — on another server
/// if there is one — from the last position `position_of` gave (items it gives `None` for, such
/// as a "started" marker, leave the position as it was). A status the server sends on purpose (e.g.
/// `NOT_FOUND`) ends the stream with that error; so does finding no server at all.
///
/// Opening is an idempotent call: it follows the client's deadline, timeouts and failover.
pub fn resume<T, P, S, Open, Fut, Pos>(client: &Client, from: P, open: Open, position_of: Pos) -> Resumable<T>
where
    T: Send + 'static,
    P: Clone + Send + Sync + 'static,
    S: Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
    Open: FnMut(Channel, P) -> Fut + Send + 'static,
    Fut: Future<Output = Result<S, Status>> + Send,
    Pos: FnMut(&T) -> Option<P> + Send + 'static,
{
    let state =
        State { client: client.clone(), position: from, open, position_of, stream: None, empty_ends: 0, done: false };
    Box::pin(stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let Some((server, stream)) = st.stream.as_mut() else {
                let position = st.position.clone();
                let open = &mut st.open;
                match st.client.call(Idempotency::Idempotent, |channel| open(channel, position.clone())).await {
                    Ok(stream) => st.stream = Some((st.client.current_server(), stream)),
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
                    if let Some(position) = (st.position_of)(&item) {
                        st.position = position;
                    }
                    st.empty_ends = 0;
                    return Some((Ok(item), st));
                }
                Some(Err(status)) => {
                    st.stream = None;
                    match classify(status) {
                        Verdict::Answer(status) => {
                            st.done = true;
                            let server = server.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                            return Some((Err(CallError::Status { server, status }), st));
                        }
                        Verdict::NotSent(cause) | Verdict::Unknown(cause) => {
                            tracing::warn!(server = ?server, error = %cause, "watch broke; resuming on another server");
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
