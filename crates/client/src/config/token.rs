//! The API token: sent as `authorization: Bearer TOKEN` by the client itself, never printed.

use std::fmt;

use http::HeaderValue;
use tonic::metadata::{Ascii, MetadataValue};

/// The metadata key the server reads the token from.
pub const AUTHORIZATION: &str = "authorization";

/// An API token, sent as `authorization: Bearer TOKEN` with every call. Its `Debug` hides it.
#[derive(Clone)]
pub struct Token {
    metadata: MetadataValue<Ascii>,
    header: HeaderValue,
}

impl Token {
    /// A token as the server's operator gave it (`DUGONG_API_TOKENS` on the server).
    pub fn new(token: &str) -> Result<Token, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the API token is empty".into());
        }
        let bad = || "the API token may contain only visible ASCII characters".to_string();
        let value = format!("Bearer {token}");
        let metadata = value.parse::<MetadataValue<Ascii>>().map_err(|_| bad())?;
        let mut header = HeaderValue::from_str(&value).map_err(|_| bad())?;
        header.set_sensitive(true);
        Ok(Token { metadata, header })
    }

    /// The `authorization` value as gRPC metadata: `Bearer TOKEN`.
    pub fn header(&self) -> &MetadataValue<Ascii> {
        &self.metadata
    }

    /// The same as an HTTP header value, marked sensitive (HPACK never indexes it).
    pub(crate) fn http_header(&self) -> &HeaderValue {
        &self.header
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bearer_values_and_stay_hidden() {
        let token = Token::new(" secret-token-0123456789 ").unwrap();
        assert_eq!(format!("{token:?}"), "Token(…)");
        assert_eq!(token.header(), "Bearer secret-token-0123456789");
        assert!(Token::new("").is_err());
        assert!(Token::new("a\nb").is_err());
    }
}
