//! The health task: asks the database every `health_interval`, and reports
//! what it learns to the gRPC health service (`grpc.health.v1`), the
//! `dugong_db_up` and the pool metrics. And the replication sampler, which
//! reads the replication state every `console.sample_every` for the status
//! page's chart.

use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::metrics as m;
use crate::ops;
use crate::state::AppState;

/// The gRPC services whose health follows the database's.
pub const SERVICES: &[&str] = &[
    "",
    "dugong.v1.Apps",
    "dugong.v1.Flows",
    "dugong.v1.Settings",
    "dugong.v1.Contexts",
    "dugong.v1.Events",
    "dugong.v1.Watch",
    "dugong.v1.Info",
];

/// Runs until `stop`; on the way out marks every service NOT_SERVING.
pub async fn run(state: AppState, reporter: HealthReporter, stop: CancellationToken) {
    let mut last_up: Option<bool> = None;
    let mut last_serving: Option<bool> = None;
    let mut tick = tokio::time::interval(state.config.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let up = match state.probe().await {
            Ok(()) => true,
            Err(e) => {
                if last_up != Some(false) {
                    tracing::warn!(error = %e, "database unreachable: not ready");
                }
                false
            }
        };
        if up && last_up == Some(false) {
            tracing::info!("database reachable again: ready");
        }
        last_up = Some(up);
        metrics::gauge!(m::DB_UP).set(if up { 1.0 } else { 0.0 });
        let pool = state.store.pool_status();
        metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(pool.idle as f64);
        metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use").set(pool.size.saturating_sub(pool.idle) as f64);
        metrics::gauge!(m::DB_POOL_WAITING).set(pool.waiting as f64);
        metrics::gauge!(m::DB_POOL_MAX).set(pool.max as f64);
        let serving = up && !state.drain.is_cancelled();
        if last_serving != Some(serving) {
            set_all(&reporter, serving).await;
            last_serving = Some(serving);
        }
    }
    set_all(&reporter, false).await;
}

/// Sets every service's status.
pub async fn set_all(reporter: &HealthReporter, serving: bool) {
    let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    for service in SERVICES {
        reporter.set_service_status(*service, status).await;
    }
}

/// Runs until `stop`: reads server info every `console.sample_every` (which
/// keeps the last replication state and any outage in the monitor) and adds
/// a point to the chart.
pub async fn sample_replication(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.console.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let info = ops::info(&state).await;
        let syncs = info.database_reachable.then_some(info.replication.as_slice());
        state.replication.sample(syncs);
    }
}
