//! Logging in and out of the console: the login form, the password check
//! (limited per account and address), the session it opens, and where the
//! browser goes next.

use std::time::Instant;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use dugong_store::{Action, Actor, NewAudit};
use maud::html;
use serde::Deserialize;

use super::html::{self, Frame, Notice, Section};
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
    let (frame, info) = frame(&state, &headers, None).await;
    let notice = match &info.database_error {
        Some(e) => Notice::Error(format!(
            "This site's database is down ({e}): nobody can log in here until it is back. The status page still \
             works, and the other site's console does too."
        )),
        None => Notice::None,
    };
    login_form(&frame, &q.next, "", &notice, StatusCode::OK)
}

fn login_form(frame: &Frame, next: &str, name: &str, notice: &Notice, status: StatusCode) -> Response {
    let body = html! {
        form.login method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            p { label for="name" { "User name" } input #name name="name" autocomplete="username" required value=(name) autofocus; }
            p { label for="password" { "Password" } input #password name="password" type="password" autocomplete="current-password" required; }
            p { button #login type="submit" { "Log in" } }
        }
        p.hint {
            "Console users are made with " code { "dugong serve … --create-admin NAME" } "; they exist on every site "
            "(replicated), a login holds on the site where it was made. " a href="/status" { "Status page" }
        }
    };
    (status, html::page(frame, Section::None, "Log in", notice, body)).into_response()
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
    let user = match state.store.console_user(&name).await {
        Ok(u) => u,
        Err(e) => return html::store_failure(&e),
    };
    // Only real accounts are counted per account: a made-up name costs no memory.
    let account = user.as_ref().map(|u| u.name.as_str());
    let limiter = &state.login_limiter;
    if let Err((wait, scope)) = limiter.check(account, ip, Instant::now()) {
        tracing::info!(client = %ip, scope = scope.as_str(), "console login refused: too many failures");
        let notice = Notice::Error(format!("Too many failed logins. Try again in {} s.", wait.as_secs().max(1)));
        let (frame, _) = frame(&state, &headers, None).await;
        return login_form(&frame, &next, &name, &notice, StatusCode::TOO_MANY_REQUESTS);
    }
    // An unknown user costs a hash check too, so timing does not tell which
    // names exist. (The decoy hash is made once, on the first such check: in
    // the blocking pool too.)
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
    let refusal = match &user {
        None => Some("no such user"),
        Some(_) if !matched => Some("wrong password"),
        Some(u) if u.disabled => Some("user disabled"),
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        // What was typed into the name field is kept only when it names a
        // user: it may be a password typed in the wrong field.
        let who = crate::audit::user(account.unwrap_or(""), ip);
        crate::audit::record(&state, entry(&who, Action::LoginFailed, account.unwrap_or(""), reason)).await;
        for scope in limiter.failed(account, ip, Instant::now()) {
            crate::audit::record(&state, entry(&who, Action::Lockout, account.unwrap_or(""), scope.as_str())).await;
        }
        let notice = Notice::Error("Wrong user name or password.".into());
        let (frame, _) = frame(&state, &headers, None).await;
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
        peer: ip.to_canonical().to_string(),
    };
    if let Err(e) = state.store.create_session(&new).await {
        return html::store_failure(&e);
    }
    let who = crate::audit::user(&name, ip);
    crate::audit::record(&state, entry(&who, Action::Login, &name, "")).await;
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(config.secure_cookie, &state.config.site, Some(&token), config.session_ttl),
    );
    response
}

/// A console entry about `user` (empty: none) with `detail`.
fn entry(who: &Actor, action: Action, user: &str, detail: &str) -> NewAudit {
    NewAudit {
        actor: who.clone(),
        action,
        resource: dugong_store::audit::CONSOLE.to_string(),
        key: user.to_string(),
        version: None,
        detail: detail.to_string(),
    }
}

/// Where to go after logging in: a path on this server, never another site.
/// Browsers drop tabs and line breaks from URLs (so `/\t/evil.example`
/// becomes `//evil.example`) and read `\\` as `/`: only plain printable
/// characters are let through, and the path must not start with two slashes.
fn safe_next(next: &str) -> String {
    let plain = next.bytes().all(|b| b.is_ascii_graphic());
    let one_slash = next.starts_with('/') && !next.starts_with("//");
    if plain && one_slash && !next.contains('\\') && !next.starts_with("/login") {
        next.to_string()
    } else {
        "/apps".to_string()
    }
}

pub async fn logout(State(state): State<AppState>, change: Change) -> Response {
    if let Err(e) = state.store.delete_session(&change.authed.token_hash).await {
        return html::store_failure(&e);
    }
    crate::audit::record(&state, entry(&change.who, Action::Logout, &change.authed.user, "")).await;
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
        for bad in [
            "",
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/login?next=/x",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /x",
            "/\u{85}/x",
            "/é",
        ] {
            assert_eq!(safe_next(bad), "/apps", "{bad}");
        }
    }
}
