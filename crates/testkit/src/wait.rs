//! Waiting for a condition with a deadline, instead of sleeping and hoping.

use std::future::Future;
use std::time::Duration;

/// How often [`wait_for`] asks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Calls `f` until it returns `Some`, every 20 ms, and returns that value.
///
/// Panics with "timed out after {timeout:?} waiting for {what}" once `timeout` has passed,
/// including when a single call of `f` is still running then. Time is tokio's clock, so under
/// paused time the deadline passes in virtual time; don't pause time while waiting on a real
/// server.
///
/// ```no_run
/// # async fn demo(client: tokio_postgres::Client) {
/// use std::time::Duration;
/// let rows = dugong_testkit::wait_for("row 1 to replicate", Duration::from_secs(10), || async {
///     let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.ok()?.get(0);
///     (n == 1).then_some(n)
/// })
/// .await;
/// # }
/// ```
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let poll = async {
        loop {
            if let Some(value) = f().await {
                return value;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    };
    match tokio::time::timeout(timeout, poll).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_some() {
        let calls = AtomicU32::new(0);
        let got = wait_for("third call", Duration::from_secs(10), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 100ms waiting for never")]
    async fn panics_on_timeout() {
        wait_for("never", Duration::from_millis(100), || async { None::<()> }).await;
    }
}
