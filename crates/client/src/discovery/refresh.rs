//! Asking DNS again: when the answers' TTLs (clamped) run out, and — no more often than the
//! minimum TTL — soon after a server failed, since it may have moved.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Answer, Discovery, Lookup, Row};

/// Resolves every host at once.
pub(crate) async fn resolve_all(lookup: &Lookup, hosts: &[String]) -> Vec<Answer> {
    join_all(hosts.iter().map(|host| lookup.resolve(host))).await
}

/// The answer for an IP literal, which needs no DNS.
pub(crate) fn literal(host: &str) -> Answer {
    match host.parse::<IpAddr>() {
        Ok(ip) => Answer::Found { ips: vec![ip], ttl: Duration::MAX },
        Err(_) => Answer::Failed(format!("{host} is not an IP address")),
    }
}

/// Starts the refresh task. `publish` installs a new table and returns false once the client is
/// gone, which ends the task.
pub(crate) fn spawn_refresh(
    discovery: Discovery,
    lookup: Lookup,
    first_wait: Duration,
    min_interval: Duration,
    kick: Arc<Notify>,
    publish: impl Fn(Vec<Row>) -> bool + Send + 'static,
) -> JoinHandle<()> {
    let mut discovery = discovery;
    tokio::spawn(async move {
        let mut last = Instant::now();
        let mut wait = first_wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(last + wait) => {}
                _ = kick.notified() => tokio::time::sleep_until(last + min_interval).await,
            }
            let answers = resolve_all(&lookup, &discovery.hosts()).await;
            last = Instant::now();
            match discovery.apply(answers) {
                Ok(resolved) => {
                    wait = resolved.refresh_in;
                    if !publish(resolved.table) {
                        return;
                    }
                }
                Err(causes) => {
                    tracing::warn!(?causes, "no server name resolves now; keeping the servers resolved before");
                    wait = min_interval;
                }
            }
        }
    })
}
