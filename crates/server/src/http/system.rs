//! Who the server is and whether it is well: `/api/v1/info`, `/healthz`
//! (the process answers), `/readyz` (the database answers and no shutdown has
//! begun), and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::ops;
use crate::state::AppState;

/// The OpenAPI 3 document of this HTTP API (checked against the routes by a test).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub async fn info(State(state): State<AppState>) -> Json<Value> {
    let info = ops::info(&state).await;
    let replication: Vec<Value> = info
        .replication
        .iter()
        .map(|s| {
            json!({
                "sync": s.sync, "state": s.state,
                "lag_seconds": s.lag.map(ops::secs),
                "last_good_age_seconds": s.last_good_age.map(ops::secs),
            })
        })
        .collect();
    Json(json!({
        "site": info.site,
        "version": info.version,
        "engine": info.engine,
        "database_reachable": info.database_reachable,
        "schema_version": info.schema_version,
        "replication": replication,
    }))
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.ready().await {
        Ok(()) => Json(json!({"ready": true})).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": reason}))).into_response()
        }
    }
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
