//! The admin console at `/`: server-rendered pages over the same operations as
//! the APIs, behind a login.
//!
//! - [`password`] — argon2id hashes of console passwords (also used by
//!   `dugong serve --create-admin`).
//! - `session` — the session cookie, the signed-in user, the CSRF check on
//!   every change, the limit on failed logins.
//! - `html` — escaping, list tables and the page frame: the banner (site,
//!   server, version, replication health, colored per site), navigation and
//!   messages.
//! - `pages` — apps and their flows (with the script editor);
//!   `records` — settings, contexts; `status` — database and replication.
//!
//! Plain HTML forms do all the work (the pages work without JavaScript);
//! `assets/console.js` adds the editor's line numbers and Tab key, and checks
//! JSON while it is typed. Everything is embedded in the binary, and every
//! response forbids inline script, framing and foreign origins.

mod html;
mod pages;
pub mod password;
mod records;
mod session;
mod status;

use std::time::Instant;

use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

pub use session::LoginLimiter;

use self::html::{esc, Frame, Health, Notice, Section};
use self::session::{Authed, Change};
use crate::ops;
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
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/apps", get(pages::apps).post(pages::create_app))
        .route("/apps/new", get(pages::new_app))
        .route("/apps/{id}", get(pages::app).post(pages::save_app))
        .route("/apps/{id}/delete", post(pages::delete_app))
        .route("/apps/{id}/flows", post(pages::create_flow))
        .route("/apps/{id}/flows/new", get(pages::new_flow))
        .route("/flows/{id}", get(pages::flow).post(pages::save_flow))
        .route("/flows/{id}/delete", post(pages::delete_flow))
        .route("/settings", get(records::settings).post(records::create_setting))
        .route("/settings/{key}", get(records::setting).post(records::save_setting))
        .route("/settings/{key}/delete", post(records::delete_setting))
        .route("/contexts", get(records::contexts))
        .route("/contexts/{user}", get(records::context))
        .route("/status", get(status::status))
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
    let mut response = next.run(request).await;
    let h = response.headers_mut();
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

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: String,
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let frame = frame(&state, &headers, None).await;
    login_form(&frame, &q.next, "", &Notice::None, StatusCode::OK)
}

fn login_form(frame: &Frame, next: &str, name: &str, notice: &Notice, status: StatusCode) -> Response {
    let body = format!(
        "<form class=\"login\" method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <p><label for=\"name\">User name</label><input id=\"name\" name=\"name\" autocomplete=\"username\" required value=\"{name}\" autofocus></p>\
         <p><label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\
         <p><button type=\"submit\" id=\"login\">Log in</button></p></form>\
         <p class=\"hint\">Console users are made with <code>dugong serve … --create-admin NAME</code>; they exist on every site (replicated), a login holds on the site where it was made.</p>",
        next = esc(next),
        name = esc(name),
    );
    (status, html::page(frame, Section::None, "Log in", notice, &body)).into_response()
}

async fn login(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !session::same_origin(&parts.headers) {
        return session::forbidden("This login came from another web site and was refused.");
    }
    let ip = session::client_ip(&parts);
    let headers = parts.headers.clone();
    let request = Request::from_parts(parts, body);
    let Ok(Form(fields)) =
        <Form<Vec<(String, String)>> as axum::extract::FromRequest<AppState>>::from_request(request, &state).await
    else {
        return (StatusCode::BAD_REQUEST, "a login is a form with name and password").into_response();
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.as_str());
    let (name, password, next) = (get("name").to_string(), get("password").to_string(), safe_next(get("next")));
    let limiter = &state.login_limiter;
    if let Err(wait) = limiter.check(&name, ip, Instant::now()) {
        tracing::warn!(client = %ip, "console login refused: too many failures");
        let notice = Notice::Error(format!("Too many failed logins. Try again in {} s.", wait.as_secs().max(1)));
        let frame = frame(&state, &headers, None).await;
        return login_form(&frame, &next, &name, &notice, StatusCode::TOO_MANY_REQUESTS);
    }
    let user = match state.store.console_user(&name).await {
        Ok(u) => u,
        Err(e) => return pages::store_failure(&e),
    };
    // An unknown user costs a hash check too, so timing does not tell which
    // names exist.
    // (The decoy hash is made once, on the first such check: in the blocking pool too.)
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matched = tokio::task::spawn_blocking(move || {
        let hash = match &stored {
            Some(hash) => hash.as_str(),
            None => password::decoy(),
        };
        password::verify(&password, hash)
    })
    .await
    .unwrap_or(false);
    if !(matched && user.is_some()) {
        limiter.failed(&name, ip, Instant::now());
        // The name is logged only when it is a user's: what someone typed into
        // the name field may be a password.
        match &user {
            Some(_) => tracing::info!(user = %name, client = %ip, "console login failed: wrong password"),
            None => tracing::info!(client = %ip, "console login failed: no such user"),
        }
        let notice = Notice::Error("Wrong user name or password.".into());
        let frame = frame(&state, &headers, None).await;
        return login_form(&frame, &next, &name, &notice, StatusCode::UNAUTHORIZED);
    }
    limiter.succeeded(&name, ip);
    let token = session::random_token();
    let config = &state.config.console;
    let new = dugong_store::NewSession {
        token_hash: session::token_hash(&token),
        user: name.clone(),
        csrf: session::random_token(),
        expires_at: dugong_store::Micros::from(std::time::SystemTime::now() + config.session_ttl),
    };
    if let Err(e) = state.store.create_session(&new).await {
        return pages::store_failure(&e);
    }
    tracing::info!(user = %name, client = %ip, "console login");
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(config.secure_cookie, &state.config.site, Some(&token), config.session_ttl),
    );
    response
}

/// Where to go after logging in: a path on this server, never another site.
fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.starts_with("/login") {
        next.to_string()
    } else {
        "/apps".to_string()
    }
}

async fn logout(State(state): State<AppState>, change: Change) -> Response {
    if let Err(e) = state.store.delete_session(&change.authed.token_hash).await {
        return pages::store_failure(&e);
    }
    tracing::info!(user = %change.authed.user, "console logout");
    let mut response = Redirect::to("/login").into_response();
    let config = &state.config.console;
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(config.secure_cookie, &state.config.site, None, config.session_ttl),
    );
    response
}

/// A page that shows `message` with `status` (not found and the like).
pub(crate) fn message_page(ctx: &Ctx, status: StatusCode, title: &str, message: &str) -> Response {
    (status, ctx.page(Section::None, title, &Notice::Error(message.to_string()), "")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_only_go_on_to_this_server() {
        assert_eq!(safe_next("/flows/x?y=1"), "/flows/x?y=1");
        for bad in ["", "//evil.example/", "https://evil.example/", "/\\evil", "/login?next=/x"] {
            assert_eq!(safe_next(bad), "/apps", "{bad}");
        }
    }
}
