//! Watch as server-sent events: `GET /api/v1/watch?position=&resources=apps,flows`.
//! Events `started`, `change` (its SSE id is the position), `reset`,
//! `going_away` and `failed` carry JSON; after the last two the stream ends.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use dugong_store::{Kind, StoreError};
use futures_util::stream::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

use super::extract::Params;
use super::schema::record_json;
use crate::error::ApiError;
use crate::state::AppState;
use crate::watch::{self, WatchMessage};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchParams {
    /// Where to resume (a `change` event's id); empty: from now.
    #[serde(default)]
    position: String,
    /// Comma-separated kinds; all when absent.
    #[serde(default)]
    resources: String,
}

pub async fn watch(
    State(state): State<AppState>,
    Params(p): Params<WatchParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let kinds = p
        .resources
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            Kind::parse(r).ok_or_else(|| {
                StoreError::invalid("resources", format!("{r:?} is not one of apps, flows, settings, contexts"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rx = watch::open(&state, &p.position, kinds).await?;
    Ok(Sse::new(ReceiverStream::new(rx).map(|m| Ok(event(m)))).keep_alive(KeepAlive::default()))
}

fn event(message: WatchMessage) -> Event {
    let (name, data) = match message {
        WatchMessage::Started { position } => ("started", json!({"position": position})),
        WatchMessage::Change { position, kind, key, record } => {
            let data = json!({
                "position": position, "resource": kind.as_str(), "key": key,
                "deleted": record.is_none(), "record": record.as_ref().map(record_json),
            });
            return Event::default().event("change").id(position).data(data.to_string());
        }
        WatchMessage::Reset { reason, position } => ("reset", json!({"reason": reason, "position": position})),
        WatchMessage::GoingAway { reason } => ("going_away", json!({"reason": reason})),
        WatchMessage::Failed { reason } => ("failed", json!({"reason": reason})),
    };
    Event::default().event(name).data(data.to_string())
}
