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
use utoipa::IntoParams;

use super::extract::Params;
use super::schema::{AuditJson, AuditPage};
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

/// The audit log's filters, each optional.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// A token's or user's name.
    actor: Option<String>,
    /// create, update, delete, login, login_failed, logout, lockout, password_change, password_reset,
    /// disable, enable, end_sessions, revoke_session.
    action: Option<String>,
    /// apps, flows, settings, contexts, users, sessions, console.
    resource: Option<String>,
    /// A record's key or a user's name.
    key: Option<String>,
    site: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    since: Option<String>,
    #[param(format = DateTime)]
    until: Option<String>,
    #[serde(default)]
    #[param(maximum = 1000)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

pub async fn list(State(state): State<AppState>, Params(p): Params<AuditParams>) -> Result<Json<AuditPage>, ApiError> {
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
    let entries = page.items.iter().map(AuditJson::from).collect();
    Ok(Json(AuditPage { entries, next_page_token: page.next.unwrap_or_default() }))
}
