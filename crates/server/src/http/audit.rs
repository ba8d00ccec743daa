//! `GET /api/v1/audit`: the audit log, newest first, for admin tokens.
//!
//! ```text
//! GET /api/v1/audit?actor=&action=&resource=&key=&site=&since=&until=&page_size=&page_token=
//!     {"entries": [{"id", "at", "site", "actor", "actor_kind", "peer", "action",
//!                   "resource", "key", "version", "detail"}], "next_page_token": "..."}
//! ```

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::Params;
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    key: Option<String>,
    site: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

pub async fn list(State(state): State<AppState>, Params(p): Params<AuditParams>) -> Result<Json<Value>, ApiError> {
    let filter = ops::AuditFilter {
        actor: p.actor,
        action: p.action,
        resource: p.resource,
        key: p.key,
        site: p.site,
        since: p.since,
        until: p.until,
    };
    let page = ops::audit(&state, &filter, p.page_size, &p.page_token).await?;
    let entries: Vec<Value> = page
        .items
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "at": e.at.to_rfc3339(), "site": e.site, "actor": e.actor,
                "actor_kind": e.actor_kind, "peer": e.peer, "action": e.action, "resource": e.resource,
                "key": e.key, "version": e.version, "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(json!({"entries": entries, "next_page_token": page.next.unwrap_or_default()})))
}
