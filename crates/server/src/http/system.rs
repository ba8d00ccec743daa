//! Who the server is and whether it is well: `/api/v1/info`, `/healthz`
//! (the process answers), `/readyz` (the database answers and no shutdown has
//! begun), and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::schema::{Healthz, InfoJson, Readyz, SyncJson};
use crate::ops;
use crate::state::AppState;

pub async fn info(State(state): State<AppState>) -> Json<InfoJson> {
    let info = ops::info(&state).await;
    let replication = info
        .replication
        .iter()
        .map(|s| SyncJson {
            sync: s.sync.clone(),
            state: s.state.clone(),
            lag_seconds: s.lag.map(ops::secs),
            last_good_age_seconds: s.last_good_age.map(ops::secs),
            replicator_running: s.running(),
            pending_rows: s.pending(),
        })
        .collect();
    Json(InfoJson {
        site: info.site,
        version: info.version.to_string(),
        engine: info.engine.to_string(),
        database_reachable: info.database_reachable,
        schema_version: info.schema_version,
        replication,
    })
}

pub async fn healthz() -> Json<Healthz> {
    Json(Healthz { status: "ok".into() })
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.ready().await {
        Ok(()) => Json(Readyz { ready: true, reason: None }).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(Readyz { ready: false, reason: Some(reason) })).into_response()
        }
    }
}

/// The OpenAPI document, generated once from the routes and their types.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::document_json()).into_response()
}
