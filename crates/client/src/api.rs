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

use tonic::Request;

pub use crate::config::{Token, AUTHORIZATION};
use crate::Idempotency;

/// `message` as a request carrying `token`, if any. A client given the token in its
/// configuration ([`ClientConfig::with_token`](crate::ClientConfig::with_token)) adds it to every
/// call by itself, and refuses to send it in cleartext beyond loopback; a token added here is the
/// caller's own business.
pub fn request<T>(message: T, token: Option<&Token>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(AUTHORIZATION, token.header().clone());
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
    fn tokens_travel_as_bearer_metadata() {
        let token = Token::new(" secret-token-0123456789 ").unwrap();
        let request = request((), Some(&token));
        assert_eq!(request.metadata().get(AUTHORIZATION).unwrap(), "Bearer secret-token-0123456789");
        assert!(super::request((), None).metadata().get(AUTHORIZATION).is_none());
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
