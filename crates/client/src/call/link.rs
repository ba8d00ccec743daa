//! The connections of a client, one per server address, and the attempts that make them.
//!
//! An attempt is a task of its own, not part of the call that started it: every call that wants
//! the address while it runs waits for that one attempt (no second dial), a call that stops
//! waiting (Happy Eyeballs moved on, or its deadline passed) leaves it running, and the attempt
//! records its own outcome — the connection for later calls, or the server's quarantine — so a
//! slow server still gets its share afterwards and a black hole is found once, not by every call.

use std::net::SocketAddr;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::task::AbortHandle;

use crate::transport::ServerChannel;

/// A working connection and its id (a later connection to the same address has another).
#[derive(Clone, Debug)]
pub(crate) struct Linked {
    /// The channel on it.
    pub channel: ServerChannel,
    /// Which connection this is.
    pub id: u64,
}

/// An attempt's outcome, shared by every call that waits for it.
pub(crate) type Attempt = Shared<BoxFuture<'static, Result<Linked, String>>>;

/// What a client has for one address.
pub(crate) enum Link {
    /// A connection.
    Ready(Linked),
    /// An attempt in flight.
    Connecting {
        /// Its id (the connection's, if it succeeds).
        id: u64,
        /// Its outcome, when it comes.
        attempt: Attempt,
        /// Ends the attempt when the link is dropped (the address left DNS, the client is gone).
        _task: AbortOnDrop,
    },
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `attempt` as a task and returns its link, and its outcome to wait for.
pub(crate) fn spawn(
    id: u64,
    attempt: impl std::future::Future<Output = Result<Linked, String>> + Send + 'static,
) -> (Link, Attempt) {
    let task = tokio::spawn(attempt);
    let abort = AbortOnDrop(task.abort_handle());
    let outcome: Attempt = task
        .map(|joined| joined.unwrap_or_else(|e| Err(format!("the connection attempt was abandoned ({e})"))))
        .boxed()
        .shared();
    (Link::Connecting { id, attempt: outcome.clone(), _task: abort }, outcome)
}

/// Where an address stands for a call.
pub(crate) enum Reach {
    /// Connected.
    Ready(Linked),
    /// Connecting: wait for this.
    Pending(Attempt),
}

impl Link {
    /// What a call gets from this link.
    pub fn reach(&self) -> Reach {
        match self {
            Link::Ready(linked) => Reach::Ready(linked.clone()),
            Link::Connecting { attempt, .. } => Reach::Pending(attempt.clone()),
        }
    }

    /// True when this is the link `id` (the connection or the attempt that makes it).
    pub fn is(&self, id: u64) -> bool {
        match self {
            Link::Ready(linked) => linked.id == id,
            Link::Connecting { id: own, .. } => *own == id,
        }
    }
}

/// For logs: the address with its first name.
pub(crate) fn label(addr: SocketAddr, names: &[String]) -> String {
    match names.first() {
        Some(name) if *name != addr.ip().to_string() => format!("{addr} ({name})"),
        _ => addr.to_string(),
    }
}
