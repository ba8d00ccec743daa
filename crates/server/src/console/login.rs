//! Logging in and out of the console: the login form, the password check
//! (limited per account and address), the session it opens, and where the
//! browser goes next.

use std::time::Instant;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::html::{self, esc, Frame, Notice, Section};
use super::password;
use super::session::{self, Change};
use super::view::frame;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
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

pub async fn login(State(state): State<AppState>, request: Request) -> Response {
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
        Err(e) => return html::store_failure(&e),
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
        user_epoch: user.as_ref().map_or(0, |u| u.session_epoch),
        peer: ip.to_string(),
    };
    if let Err(e) = state.store.create_session(&new).await {
        return html::store_failure(&e);
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

pub async fn logout(State(state): State<AppState>, change: Change) -> Response {
    if let Err(e) = state.store.delete_session(&change.authed.token_hash).await {
        return html::store_failure(&e);
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
