//! Calling the application server's API (`dugong_proto::v1`) through the HA client: the bearer
//! token as gRPC metadata, and which calls may be retried on another server.
//!
//! What may run twice, and why:
//!
//! - Gets, lists, `ServerInfo` and opening a watch only read: [`Idempotency::Idempotent`].
//! - Deletes are idempotent: a delete retried after its first attempt ran finds the record gone
//!   (`NOT_FOUND`, which callers that retried may take as done) or, with an expected version, a
//!   moved version (`ABORTED`); it never removes anything else.
//! - `PostEvents` is idempotent: every event carries an id made by the client ([`new_id`]), and the
//!   server stores an id once, so a batch sent again stores nothing twice.
//! - A put is idempotent only with an expected version ([`put_idempotency`]): a retry whose first
//!   attempt ran finds the version moved and reports the conflict instead of writing again. A put
//!   without one would write a second time — over a write another client made in between — so the
//!   HA client does not retry it once it may have reached a server: the caller gets
//!   [`CallError::OutcomeUnknown`](crate::CallError::OutcomeUnknown) and decides.

use std::fmt;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::Request;

use crate::Idempotency;

/// The metadata key the server reads the token from.
pub const AUTHORIZATION: &str = "authorization";

/// An API token, sent as `authorization: Bearer TOKEN` with every call. Its `Debug` hides it.
#[derive(Clone)]
pub struct Token(MetadataValue<Ascii>);

impl Token {
    /// A token as the server's operator gave it (`DUGONG_API_TOKENS` on the server).
    pub fn new(token: &str) -> Result<Token, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the API token is empty".into());
        }
        format!("Bearer {token}")
            .parse::<MetadataValue<Ascii>>()
            .map(Token)
            .map_err(|_| "the API token may contain only visible ASCII characters".into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// `message` as a request carrying `token`, if any.
pub fn request<T>(message: T, token: Option<&Token>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(AUTHORIZATION, token.0.clone());
    }
    request
}

/// A put may be retried on another server only when it carries an expected version (see the
/// module docs).
pub fn put_idempotency(expected_version: Option<i64>) -> Idempotency {
    match expected_version {
        Some(_) => Idempotency::Idempotent,
        None => Idempotency::NotIdempotent,
    }
}

/// A new id for an app, a flow or an event: a random UUID, lowercase with hyphens.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_travel_as_bearer_metadata_and_stay_hidden() {
        let token = Token::new(" secret-token-0123456789 ").unwrap();
        assert_eq!(format!("{token:?}"), "Token(…)");
        let request = request((), Some(&token));
        assert_eq!(request.metadata().get(AUTHORIZATION).unwrap(), "Bearer secret-token-0123456789");
        assert!(super::request((), None).metadata().get(AUTHORIZATION).is_none());
        assert!(Token::new("").is_err());
        assert!(Token::new("a\nb").is_err());
    }

    #[test]
    fn puts_are_retried_only_with_an_expected_version() {
        assert_eq!(put_idempotency(Some(0)), Idempotency::Idempotent);
        assert_eq!(put_idempotency(Some(7)), Idempotency::Idempotent);
        assert_eq!(put_idempotency(None), Idempotency::NotIdempotent);
        assert_ne!(new_id(), new_id());
        assert_eq!(new_id().len(), 36);
    }
}
