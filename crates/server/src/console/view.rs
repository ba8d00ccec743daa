//! What every signed-in page is rendered with ([`Ctx`]: the user, the frame
//! with the site's identity and replication health) and the pages every
//! section shares: messages, failures, and an edit that lost to a save made
//! first.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dugong_store::{Kind, Record};

use super::html::{self, Frame, Health, Notice, Section};
use super::session::Authed;
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

/// Most records a console list shows (pages of the store's default size).
const LIST_LIMIT: usize = 5_000;

/// Every record of `kind` (flows: of `app_id`), up to [`LIST_LIMIT`].
pub(crate) async fn all(state: &AppState, kind: Kind, app_id: Option<&str>) -> Result<Vec<Record>, ApiError> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = ops::list(state, kind, 0, &token, app_id).await?;
        out.extend(page.items);
        match page.next {
            Some(next) if out.len() < LIST_LIMIT => token = next,
            _ => return Ok(out),
        }
    }
}

/// The frame of a page: who the site is and how replication looks now.
pub(crate) async fn frame(state: &AppState, headers: &HeaderMap, user: Option<&Authed>) -> Frame {
    frame_of(&ops::info(state).await, headers, user)
}

/// [`frame`] from server info already read.
fn frame_of(info: &ops::Info, headers: &HeaderMap, user: Option<&Authed>) -> Frame {
    Frame {
        site: info.site.clone(),
        host: headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_string(),
        version: info.version,
        health: health(info),
        user: user.map(|u| (u.user.clone(), u.csrf.clone())),
    }
}

/// The banner's one-line summary of the database and replication.
fn health(info: &ops::Info) -> Health {
    if !info.database_reachable {
        return Health { class: "bad", text: "database UNREACHABLE".into() };
    }
    if info.replication.is_empty() {
        return Health { class: "unknown", text: "replication: not running here".into() };
    }
    let good = info.replication.iter().all(|s| s.state == "Good");
    let lag = info.replication.iter().filter_map(|s| s.lag).max();
    let states: Vec<String> = info.replication.iter().map(|s| format!("{} {}", s.sync, s.state)).collect();
    let mut text = format!("replication: {}", states.join(", "));
    if let Some(lag) = lag {
        text.push_str(&format!(", lag {:.1} s", lag.as_secs_f64()));
    }
    Health { class: if good { "good" } else { "bad" }, text }
}

/// The rendering context of a signed-in page.
pub(crate) struct Ctx {
    pub state: AppState,
    pub authed: Authed,
    pub frame: Frame,
    /// The server info the frame shows, read once per request (the status
    /// page shows all of it).
    pub info: ops::Info,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ctx, Response> {
        let authed = Authed::from_request_parts(parts, state).await?;
        let info = ops::info(state).await;
        let frame = frame_of(&info, &parts.headers, Some(&authed));
        Ok(Ctx { state: state.clone(), authed, frame, info })
    }
}

impl Ctx {
    /// A page in this context, with status 200.
    pub fn page(&self, section: Section, title: &str, notice: &Notice, body: &str) -> Response {
        html::page(&self.frame, section, title, notice, body).into_response()
    }

    /// The session's CSRF token as a hidden field, for every form that changes something.
    pub fn csrf(&self) -> String {
        html::hidden("csrf", &self.authed.csrf)
    }
}

/// A page that shows `message` with `status` (not found and the like).
pub(crate) fn message_page(ctx: &Ctx, status: StatusCode, title: &str, message: &str) -> Response {
    (status, ctx.page(Section::None, title, &Notice::Error(message.to_string()), "")).into_response()
}

/// An API failure as a page.
pub(crate) fn failure(ctx: &Ctx, e: &ApiError) -> Response {
    let title = match e.http_status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Not accepted",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        _ => "Error",
    };
    message_page(ctx, e.http_status(), title, &e.public_message())
}

/// Someone saved first: both versions side by side, the user's still editable.
pub(crate) fn conflict_page(ctx: &Ctx, what: &str, current: Option<i64>, mine: &str, theirs: &str) -> Response {
    let message = match current {
        Some(v) => format!(
            "Someone else saved this {what} first (it is now at version {v}). Your changes were NOT saved and are kept \
             below, next to the saved version: compare them, then save yours over it or leave."
        ),
        None => format!("Someone else deleted this {what}. Your changes were NOT saved and are kept below."),
    };
    let title = current.map_or("(none)".to_string(), |v| format!("version {v}"));
    let body = format!(
        "<div class=\"conflict\" id=\"conflict\"><section aria-labelledby=\"mine-h\"><h2 id=\"mine-h\">Your changes</h2>{mine}</section>\
         <section aria-labelledby=\"theirs-h\" id=\"theirs\"><h2 id=\"theirs-h\">Saved: {title}</h2>{theirs}</section></div>"
    );
    let section = if what == "setting" { Section::Settings } else { Section::Apps };
    (StatusCode::CONFLICT, ctx.page(section, &format!("Conflict: {what} changed"), &Notice::Error(message), &body))
        .into_response()
}
