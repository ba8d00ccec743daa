//! Console sessions: the session cookie, the signed-in user of a request
//! ([`Authed`]) and the CSRF check on every change ([`Change`]).
//!
//! Sessions live in the site's own database state (`dugong_local`), not in
//! signed cookies: every server of a site sees them without sharing a signing
//! key, and logging out ends the session for real instead of waiting for a
//! cookie to expire. The cookie carries 32 random bytes; the database keeps
//! only their SHA-256, so reading the table logs nobody in.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::state::AppState;

/// A new random token: 32 bytes, base64url without padding.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a session token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The cookie's name. It carries the site id: browsers keep cookies per host
/// name, not per port, so two sites' consoles reached on one name (a proxy, a
/// test on 127.0.0.1) must not overwrite each other's login. With `Secure`,
/// the `__Host-` prefix makes browsers also insist on `Path=/` and no
/// `Domain`, so no other host can plant one. (Site ids are letters, digits,
/// `.`, `_` and `-`: valid in a cookie name.)
pub fn cookie_name(secure: bool, site: &str) -> String {
    if secure {
        format!("__Host-dugong_session_{site}")
    } else {
        format!("dugong_session_{site}")
    }
}

/// `Set-Cookie` for a session token (`None`: remove the cookie).
pub fn set_cookie(secure: bool, site: &str, token: Option<&str>, max_age: Duration) -> HeaderValue {
    let (value, age) = match token {
        Some(t) => (t, max_age.as_secs()),
        None => ("", 0),
    };
    let attr = if secure { "; Secure" } else { "" };
    let text = format!("{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{attr}", cookie_name(secure, site));
    // Only base64url characters and fixed text: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The address a request came from (unspecified when unknown, as in tests
/// that call the router directly).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The signed-in user of a request. Pages that take it send everyone else to
/// the login page.
#[derive(Clone)]
pub struct Authed {
    pub user: String,
    pub csrf: String,
    pub token_hash: String,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Authed, Response> {
        // A handler taking both a page context and a change extracts this twice: look the
        // session up once per request.
        if let Some(authed) = parts.extensions.get::<Authed>() {
            return Ok(authed.clone());
        }
        let to_login = || {
            // Back to the page after logging in; a refused form post goes to
            // the start page instead (its URL only takes posts).
            let next = match parts.method {
                axum::http::Method::GET => parts.uri.path_and_query().map_or("/apps", |p| p.as_str()),
                _ => "/apps",
            };
            let target = format!("/login?next={}", super::html::url_component(next));
            Redirect::to(&target).into_response()
        };
        let secure = state.config.console.secure_cookie;
        let Some(token) = cookie(&parts.headers, &cookie_name(secure, &state.config.site)) else {
            return Err(to_login());
        };
        let hash = token_hash(token);
        match state.store.session(&hash).await {
            Ok(Some(s)) => {
                let authed = Authed { user: s.user, csrf: s.csrf, token_hash: hash };
                parts.extensions.insert(authed.clone());
                Ok(authed)
            }
            Ok(None) => Err(to_login()),
            Err(e) => Err(super::html::store_failure(&e)),
        }
    }
}

/// A change made from a console form: a signed-in user, a request from this
/// origin, and the session's CSRF token in the form (`csrf`) or in an
/// `X-CSRF-Token` header. Anything else is refused with 403 before a handler
/// runs, so nothing is written.
pub struct Change {
    pub authed: Authed,
    pub fields: Fields,
    /// The user and address, as the audit log records them.
    pub who: dugong_store::Actor,
}

impl FromRequest<AppState> for Change {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Change, Response> {
        let (mut parts, body) = request.into_parts();
        let authed = Authed::from_request_parts(&mut parts, state).await?;
        let who = crate::audit::user(&authed.user, client_ip(&parts));
        if !same_origin(&parts.headers) {
            return Err(forbidden("This change came from another web site and was refused."));
        }
        let header_token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_string);
        let request = Request::from_parts(parts, body);
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(request, state)
            .await
            .map_err(|e| (StatusCode::BAD_REQUEST, e.body_text()).into_response())?;
        let fields = Fields(pairs);
        let presented = header_token.unwrap_or_else(|| fields.get("csrf").to_string());
        if !bool::from(presented.as_bytes().ct_eq(authed.csrf.as_bytes())) {
            tracing::warn!(user = %crate::audit::pseudonym(&authed.user), "console change refused: missing or wrong CSRF token");
            return Err(forbidden(
                "This change was refused: its form had no valid security (CSRF) token. Reload the page and try again.",
            ));
        }
        Ok(Change { authed, fields, who })
    }
}

/// Whether a state-changing request comes from this console's own pages:
/// browsers send `Origin` (and `Sec-Fetch-Site`) on form posts; a request
/// without them (a script, curl) still needs the CSRF token.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site == "cross-site" || site == "same-site" {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && origin_host == host
}

/// A 403 page for a refused change.
pub fn forbidden(message: &str) -> Response {
    (StatusCode::FORBIDDEN, super::html::bare_page("Refused", message)).into_response()
}

/// A form's fields, in order.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// A text area's value with the browser's CRLF line ends made LF, so a
    /// script saved from a browser matches one saved by any other client.
    pub fn text(&self, name: &str) -> String {
        self.get(name).replace("\r\n", "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_strict_and_secure_when_asked() {
        let c = set_cookie(true, "0", Some("abc"), Duration::from_secs(60));
        assert_eq!(c, "__Host-dugong_session_0=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
        let c = set_cookie(false, "s-1", None, Duration::from_secs(60));
        assert_eq!(c, "dugong_session_s-1=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; dugong_session_0=tok; b=2"));
        assert_eq!(cookie(&headers, "dugong_session_0"), Some("tok"));
        assert_eq!(token_hash("x").len(), 64);
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h), "no Origin: the CSRF token decides");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8000"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8000"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }
}
