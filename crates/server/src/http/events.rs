//! Events as JSON: `POST /api/v1/events` with `{"events": [...]}`, each
//! `{"id", "kind", "user"?, "app_id"?, "occurred_at"? (RFC 3339, UTC), "payload"?}`.

use axum::extract::State;
use axum::Json;
use dugong_store::{Event, EventInput, Micros, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{JsonBody, Params};
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    events: Vec<EventBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    id: String,
    kind: String,
    user: Option<String>,
    app_id: Option<String>,
    occurred_at: Option<String>,
    #[serde(default)]
    payload: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

pub async fn post(State(state): State<AppState>, JsonBody(body): JsonBody<PostBody>) -> Result<Json<Value>, ApiError> {
    dugong_store::validate::event_count(body.events.len())?;
    let events = body.events.iter().enumerate().map(|(i, e)| input(i, e)).collect::<Result<Vec<_>, _>>()?;
    let posted = ops::post_events(&state, events).await?;
    Ok(Json(json!({"accepted": posted.accepted, "duplicates": posted.duplicates})))
}

pub async fn list(State(state): State<AppState>, Params(p): Params<ListParams>) -> Result<Json<Value>, ApiError> {
    let page = ops::list_events(&state, p.page_size, &p.page_token).await?;
    let events: Vec<Value> = page.items.iter().map(event_json).collect();
    Ok(Json(json!({"events": events, "next_page_token": page.next.unwrap_or_default()})))
}

fn input(i: usize, e: &EventBody) -> Result<EventInput, ApiError> {
    let occurred = match &e.occurred_at {
        None => None,
        Some(text) => Some(Micros::from(humantime::parse_rfc3339(text).map_err(|_| {
            StoreError::invalid(
                format!("events[{i}].occurred_at"),
                "not an RFC 3339 UTC time like 2024-05-01T12:00:00Z",
            )
        })?)),
    };
    Ok(EventInput::new(i, &e.id, &e.kind, e.user.as_deref(), e.app_id.as_deref(), occurred, &e.payload)?)
}

fn event_json(e: &Event) -> Value {
    json!({
        "id": e.id, "kind": e.kind, "user": e.user, "app_id": e.app_id,
        "occurred_at": e.occurred_at.map(Micros::to_rfc3339), "payload": e.payload,
        "site": e.site, "received_at": e.received_at.to_rfc3339(),
    })
}
