//! What every signed-in page is rendered with ([`Ctx`]: the user, the frame
//! with the site's identity and health), how the banner rates that health,
//! and the pages every section shares: messages, failures, and an edit that
//! lost to a save made first.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::html::{self, duration, Frame, Health, Level, Notice, Section};
use super::session::Authed;
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

/// The frame of a page: who the site is and how it looks now.
pub(crate) async fn frame(state: &AppState, headers: &HeaderMap, user: Option<&Authed>) -> (Frame, ops::Info) {
    let info = ops::info(state).await;
    (frame_of(&info, headers, user), info)
}

/// [`frame`] from server info already read.
pub(crate) fn frame_of(info: &ops::Info, headers: &HeaderMap, user: Option<&Authed>) -> Frame {
    Frame {
        site: info.site.clone(),
        host: headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_string(),
        version: info.version,
        health: health(info),
        user: user.map(|u| (u.user.clone(), u.csrf.clone())),
    }
}

/// The banner's one-line summary. Worst first: the site's database down or a
/// sync Bad (a database of it unreachable) is degraded; a replicator that
/// stopped or went quiet is a warning (nothing moves, nothing is lost);
/// otherwise the syncs and their lag.
pub(crate) fn health(info: &ops::Info) -> Health {
    if !info.database_reachable {
        return Health { level: Level::Degraded, text: "DEGRADED: this site's database is unreachable".into() };
    }
    if info.replication.is_empty() {
        let text = match &info.replication_error {
            Some(_) => "replication: state unreadable",
            None => "replication: not running here",
        };
        return Health { level: Level::Unknown, text: text.into() };
    }
    let mut level = Level::Good;
    let mut problems = Vec::new();
    for s in &info.replication {
        if s.state == "Bad" {
            level = Level::Degraded;
            problems.push(format!("{} Bad", s.sync));
        } else if s.state != "Good" {
            level = level.max_with(Level::Warning);
            problems.push(format!("{} {}", s.sync, s.state));
        }
        if !s.running() {
            level = level.max_with(Level::Warning);
            problems.push(match &s.replicator {
                Some(beat) if beat.stopped => format!("{}: replicator stopped {} ago", s.sync, duration(beat.age)),
                Some(beat) => format!("{}: replicator stopped (no heartbeat for {})", s.sync, duration(beat.age)),
                None => format!("{}: no replicator has run", s.sync),
            });
        }
    }
    let lag = info.replication.iter().filter_map(|s| s.lag).max();
    let text = match level {
        Level::Good => {
            let states: Vec<String> = info.replication.iter().map(|s| format!("{} {}", s.sync, s.state)).collect();
            let lag = lag.map_or(String::new(), |l| format!(", lag {}", duration(l)));
            format!("replication: {}{lag}", states.join(", "))
        }
        Level::Degraded => format!("DEGRADED: {}", problems.join("; ")),
        _ => format!("WARNING: {}", problems.join("; ")),
    };
    Health { level, text }
}

impl Level {
    /// The worse of two levels.
    fn max_with(self, other: Level) -> Level {
        let rank = |l: Level| match l {
            Level::Good => 0,
            Level::Unknown => 1,
            Level::Warning => 2,
            Level::Degraded => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The rendering context of a signed-in page.
pub(crate) struct Ctx {
    pub state: AppState,
    pub authed: Authed,
    pub frame: Frame,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ctx, Response> {
        let authed = Authed::from_request_parts(parts, state).await?;
        let info = ops::info(state).await;
        let frame = frame_of(&info, &parts.headers, Some(&authed));
        Ok(Ctx { state: state.clone(), authed, frame })
    }
}

impl Ctx {
    /// A page in this context, with status 200.
    pub fn page(&self, section: Section, title: &str, notice: &Notice, body: Markup) -> Response {
        html::page(&self.frame, section, title, notice, body).into_response()
    }

    /// The session's CSRF token as a hidden field, for every form that changes something.
    pub fn csrf(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.authed.csrf); }
    }
}

/// A page that shows `message` with `status` (not found and the like).
pub(crate) fn message_page(ctx: &Ctx, status: StatusCode, title: &str, message: &str) -> Response {
    (status, ctx.page(Section::None, title, &Notice::Error(message.to_string()), html! {})).into_response()
}

/// An API failure as a page; an unreachable database says so.
pub(crate) fn failure(ctx: &Ctx, e: &ApiError) -> Response {
    if let ApiError::Store(store) = e {
        if store.is_unavailable() {
            return html::store_failure(store);
        }
    }
    let title = match e.http_status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Not accepted",
        StatusCode::CONFLICT => "Not saved",
        _ => "Error",
    };
    message_page(ctx, e.http_status(), title, &e.public_message())
}

/// Someone saved first: both versions side by side, the user's still editable.
pub(crate) fn conflict_page(ctx: &Ctx, what: &str, current: Option<i64>, mine: Markup, theirs: Markup) -> Response {
    let message = match current {
        Some(v) => format!(
            "Someone else saved this {what} first (it is now at version {v}). Your changes were NOT saved and are kept \
             below, next to the saved version: compare them, then save yours over it or leave."
        ),
        None => format!("Someone else deleted this {what}. Your changes were NOT saved and are kept below."),
    };
    let title = current.map_or("(none)".to_string(), |v| format!("version {v}"));
    let body = html! {
        div.conflict #conflict {
            section aria-labelledby="mine-h" { h2 #mine-h { "Your changes" } (mine) }
            section #theirs aria-labelledby="theirs-h" { h2 #theirs-h { "Saved: " (title) } (theirs) }
        }
    };
    let section = if what == "setting" { Section::Settings } else { Section::Apps };
    (StatusCode::CONFLICT, ctx.page(section, &format!("Conflict: {what} changed"), &Notice::Error(message), body))
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dugong_store::{Heartbeat, SyncHealth};

    use super::*;

    fn info(syncs: Vec<SyncHealth>) -> ops::Info {
        ops::Info {
            site: "0".into(),
            version: "1",
            engine: "postgres",
            database_reachable: true,
            database_error: None,
            schema_version: 4,
            replication: syncs,
            replication_error: None,
        }
    }

    fn sync(state: &str, heartbeat_age: Option<u64>) -> SyncHealth {
        SyncHealth {
            sync: "sync0".into(),
            state: state.into(),
            lag: Some(Duration::from_millis(200)),
            replicator: heartbeat_age.map(|age| Heartbeat {
                pid: 1,
                host: "h".into(),
                age: Duration::from_secs(age),
                interval: Some(Duration::from_secs(3)),
                stopped: false,
            }),
            ..SyncHealth::default()
        }
    }

    #[test]
    fn the_banner_rates_the_worst_problem() {
        let h = health(&info(vec![sync("Good", Some(1))]));
        assert_eq!((h.level, h.text.as_str()), (Level::Good, "replication: sync0 Good, lag 0.2 s"));
        let h = health(&info(vec![sync("Good", Some(60))]));
        assert_eq!(h.level, Level::Warning, "a Good state with a stale heartbeat: {}", h.text);
        assert!(h.text.contains("replicator stopped (no heartbeat for 60 s)"), "{}", h.text);
        let h = health(&info(vec![sync("Bad", None)]));
        assert_eq!(h.level, Level::Degraded, "{}", h.text);
        let mut down = info(vec![]);
        down.database_reachable = false;
        assert_eq!(health(&down).level, Level::Degraded);
        assert_eq!(health(&info(vec![])).level, Level::Unknown);
    }
}
