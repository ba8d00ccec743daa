//! What every call handler shares: the store, the configuration, the change
//! feed and the drain signal.

use std::sync::Arc;
use std::time::Duration;

use dugong_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Access, AuthError, Caller};
use crate::config::ServerConfig;
use crate::console::limiter::LoginLimiter;
use crate::feed::Feed;
use crate::replication::Monitor;

/// How long a readiness or info check waits for the database.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared by every handler; cheap to clone.
pub type AppState = Arc<Shared>;

pub struct Shared {
    pub store: Store,
    pub config: ServerConfig,
    pub schema_version: i64,
    pub feed: Feed,
    /// Cancelled when shutdown starts: watchers say goodbye, readiness fails.
    pub drain: CancellationToken,
    /// Watch streams, so shutdown can wait for their goodbyes.
    pub tasks: TaskTracker,
    /// The console's failed logins.
    pub login_limiter: LoginLimiter,
    /// Replication as this server saw it lately (kept through an outage).
    pub replication: Monitor,
}

impl Shared {
    /// Checks a call's `Authorization` value; who is calling.
    pub fn authorize(&self, access: Access, header: Option<&[u8]>) -> Result<Caller, AuthError> {
        self.config.auth.check(access, header)
    }

    /// Asks the database now, bounded by [`PROBE_TIMEOUT`].
    pub async fn probe(&self) -> Result<(), StoreError> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.store.ping()).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {PROBE_TIMEOUT:?}"))),
        }
    }

    /// Ready for traffic: the database answers and no shutdown has begun.
    pub async fn ready(&self) -> Result<(), String> {
        if self.drain.is_cancelled() {
            return Err("shutting down".into());
        }
        self.probe().await.map_err(|e| e.to_string())
    }
}
