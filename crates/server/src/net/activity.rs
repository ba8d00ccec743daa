//! Whether a connection is in use: requests in flight (until their response
//! body has ended, so a watch stream keeps its connection busy) and when the
//! last one ended. A connection idle for the idle timeout is closed.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One connection's activity.
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when the last request ended.
    last_end_ms: AtomicU64,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// A request began; it ends when the returned guard drops.
    pub fn begin(self: &Arc<Activity>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Completes once no request has been in flight for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                notified.await;
                continue;
            }
            let last = self.started + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// A request in flight.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        a.last_end_ms.store(now, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
        a.changed.notify_waiters();
    }
}

/// A response body that keeps its request in flight until it has ended (or
/// is dropped, when the client went away).
pub struct Tracked<B> {
    inner: B,
    guard: Option<InFlight>,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: InFlight) -> Tracked<B> {
        Tracked { inner, guard: Some(guard) }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_and_never_while_one_runs() {
        let activity = Activity::new();
        let request = activity.begin();
        let idle = activity.idle(Duration::from_secs(10));
        tokio::pin!(idle);
        tokio::select! {
            _ = &mut idle => panic!("idle while a request runs"),
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        drop(request);
        let ended = Instant::now();
        idle.await;
        assert_eq!(ended.elapsed().as_secs(), 10);
    }
}
