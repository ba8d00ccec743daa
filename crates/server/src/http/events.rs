//! Events as JSON: `POST /api/v1/events` with `{"events": [...]}`, each
//! `{"id", "kind", "user"?, "app_id"?, "occurred_at"? (RFC 3339, UTC), "payload"?}`.

use axum::extract::State;
use axum::Json;
use dugong_store::{EventInput, Micros, StoreError};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{JsonBody, Params};
use super::schema::{EventJson, EventPage, NewEvent, PostEvents, Posted};
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

/// `?page_size=&page_token=` of the events list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 1000; 0 or absent: 100.
    #[serde(default)]
    #[param(maximum = 1000)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

pub async fn post(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PostEvents>,
) -> Result<Json<Posted>, ApiError> {
    dugong_store::validate::event_count(body.events.len())?;
    let events = body.events.iter().enumerate().map(|(i, e)| input(i, e)).collect::<Result<Vec<_>, _>>()?;
    let posted = ops::post_events(&state, events).await?;
    Ok(Json(Posted { accepted: posted.accepted, duplicates: posted.duplicates }))
}

pub async fn list(State(state): State<AppState>, Params(p): Params<ListParams>) -> Result<Json<EventPage>, ApiError> {
    let page = ops::list_events(&state, p.page_size, &p.page_token).await?;
    let events = page.items.iter().map(EventJson::from).collect();
    Ok(Json(EventPage { events, next_page_token: page.next.unwrap_or_default() }))
}

fn input(i: usize, e: &NewEvent) -> Result<EventInput, ApiError> {
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
