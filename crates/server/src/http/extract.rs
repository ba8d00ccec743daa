//! Reading requests so that every problem is a 4xx that names it: a JSON body
//! (content type, size, syntax, unknown fields, wrong types — with the path to
//! the offending field), a query string, a path segment. And errors as JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::net::Peer;
use crate::state::AppState;

/// A JSON body of `T`, refused whole if anything about it is wrong.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::NotJson);
        }
        let limit = state.config.body_limit;
        let bytes = Bytes::from_request(request, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit }
            } else {
                ApiError::BadRequest(r.body_text())
            }
        })?;
        dugong_store::validate::exact_integers(&bytes)
            .map_err(|reason| ApiError::BadRequest(format!("invalid JSON body: {reason}")))?;
        parse(&bytes).map(JsonBody)
    }
}

/// `bytes` as one JSON value of `T`, nothing after it.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // "." is the root; "?" marks a place serde had not named yet.
        if path == "." || path.contains('?') {
            ApiError::BadRequest(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::BadRequest(format!("invalid JSON body at {path}: {inner}"))
        }
    })?;
    de.end().map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// Who made a request, as the audit log names them: the caller the auth
/// layer found, from the peer the listener saw.
pub struct Who(pub dugong_store::Actor);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let caller = parts.extensions.get::<Caller>().cloned().unwrap_or(Caller::Anonymous);
        Ok(Who(crate::audit::actor(&caller, parts.extensions.get::<Peer>())))
    }
}

/// A query string of `T` (use `deny_unknown_fields` on `T`).
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri).map(|Query(v)| Params(v)).map_err(|r| ApiError::BadRequest(r.body_text()))
    }
}

/// The one path parameter of a route (a record's key).
pub struct Key(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(k)| Key(k))
            .map_err(|r| ApiError::BadRequest(r.body_text()))
    }
}

impl IntoResponse for ApiError {
    /// `{"error": "...", "code": "...", "current_version": n}` with the
    /// matching status; `WWW-Authenticate: Bearer` on 401.
    fn into_response(self) -> Response {
        let status = self.http_status();
        let mut body = serde_json::json!({"error": self.public_message(), "code": self.code()});
        if let Some(v) = self.current_version() {
            body["current_version"] = v.into();
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        value: serde_json::Value,
        expected_version: Option<i64>,
        items: Option<Vec<Item>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        n: i64,
    }

    fn message(text: &str) -> String {
        parse::<Body>(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn every_problem_is_named() {
        assert!(
            message("{\"value\": 1,").starts_with("invalid JSON body: EOF while parsing"),
            "{}",
            message("{\"value\": 1,")
        );
        assert!(message("{\"valeu\": 1}").contains("unknown field `valeu`"));
        assert!(message("{\"value\": 1, \"expected_version\": \"3\"}")
            .contains("at expected_version: invalid type: string"));
        assert!(message("{\"value\": 1, \"items\": [{\"n\": 1}, {\"n\": true}]}")
            .contains("at items[1].n: invalid type: boolean"));
        assert!(message("{}").contains("missing field `value`"));
        assert!(message("{\"value\": 1} x").contains("trailing characters"));
        assert!(parse::<Body>(b"{\"value\": null}").is_ok());
    }
}
