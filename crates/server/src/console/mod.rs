//! The admin console at `/`: server-rendered pages over the same operations as
//! the APIs, behind a login.
//!
//! From the bottom up:
//! - [`password`] — argon2id hashes of console passwords (also used by
//!   `dugong serve --create-admin`); `limiter` — the limit on failed logins.
//! - `html` — the page frame in maud templates (compile-time checked,
//!   escaping by default): the banner (site, server, version, health,
//!   colored per site), navigation and messages; times and links.
//! - `session` — the session cookie, the signed-in user, the CSRF check on
//!   every change.
//! - `view` — what a signed-in page is rendered with, how the banner rates
//!   health, and the message, failure and conflict pages every section
//!   shares; `list` — search, order and pages of every list.
//! - `login` — logging in and out; `pages` — apps and flows (with the
//!   script editor); `records` — settings, contexts; `history` — every
//!   version of a record, restorable; `conflicts` — cross-site conflicts with
//!   both versions, restorable; `status` (with `chart`) — database,
//!   replication and its last hour, also while the database is down; `users`
//!   — users, sessions, one's own password; `audit` — the audit log.
//!
//! Plain HTML forms do all the work (the pages work without JavaScript);
//! `assets/console.js` adds the editor's line numbers and Tab key, checks
//! JSON while it is typed, and shows times in the reader's time zone with
//! their age. Everything is embedded in the binary, and every response
//! forbids inline script, framing and foreign origins. The style sheet
//! follows the browser's dark mode and fits a 360-pixel screen.

mod audit;
mod chart;
mod conflicts;
mod history;
mod html;
pub(crate) mod limiter;
mod list;
mod login;
mod pages;
pub mod password;
mod records;
mod session;
mod status;
mod users;
mod view;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub use limiter::LoginLimiter;

use crate::state::AppState;

const CONSOLE_CSS: &str = include_str!("../../console/console.css");
const CONSOLE_JS: &str = include_str!("../../console/console.js");

/// Every page of every response: no inline script or style, nothing from
/// other origins, never in a frame.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, with their security headers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/apps", get(pages::apps).post(pages::create_app))
        .route("/apps/new", get(pages::new_app))
        .route("/apps/{id}", get(pages::app).post(pages::save_app))
        .route("/apps/{id}/delete", post(pages::delete_app))
        .route("/apps/{id}/flows", post(pages::create_flow))
        .route("/apps/{id}/flows/new", get(pages::new_flow))
        .route("/flows", get(pages::flows))
        .route("/flows/{id}", get(pages::flow).post(pages::save_flow))
        .route("/flows/{id}/delete", post(pages::delete_flow))
        .route("/settings", get(records::settings).post(records::create_setting))
        .route("/settings/{key}", get(records::setting).post(records::save_setting))
        .route("/settings/{key}/delete", post(records::delete_setting))
        .route("/contexts", get(records::contexts))
        .route("/contexts/{user}", get(records::context))
        .route("/history", get(history::list))
        .route("/history/{id}", get(history::version))
        .route("/history/{id}/restore", post(history::restore))
        .route("/conflicts", get(conflicts::list))
        .route("/conflicts/{id}", get(conflicts::conflict))
        .route("/conflicts/{id}/restore", post(conflicts::restore))
        .route("/status", get(status::status))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{name}", get(users::user))
        .route("/users/{name}/password", post(users::reset_password))
        .route("/users/{name}/disable", post(users::disable))
        .route("/users/{name}/enable", post(users::enable))
        .route("/users/{name}/sessions/end", post(users::end_sessions))
        .route("/users/{name}/delete", post(users::delete))
        .route("/sessions/{hash}/revoke", post(users::revoke))
        .route("/account", get(users::account))
        .route("/account/password", post(users::change_password))
        .route("/audit", get(audit::audit))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/site.css", get(site_css))
        .layer(middleware::from_fn(security_headers))
}

/// `/`: the apps page (which sends strangers to the login page).
pub async fn root() -> Redirect {
    Redirect::to("/apps")
}

async fn security_headers(request: Request, next: Next) -> Response {
    // Over TLS, browsers are told never to try this site in plain again.
    let tls = request.extensions().get::<crate::net::Peer>().is_some_and(|p| p.tls);
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if tls {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn site_css(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], html::site_css(&state.config.site)).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}
