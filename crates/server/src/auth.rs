//! Bearer tokens: writes (and, with `protect_reads`, reads) need
//! `Authorization: Bearer <token>`, in an HTTP header or gRPC metadata alike.
//!
//! Tokens are compared in constant time, and against every configured token
//! whatever matched, so timing tells an attacker nothing about how much of a
//! guess was right. No token ever reaches a log or a `Debug` print.

use std::fmt;

use subtle::ConstantTimeEq;

/// Shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

/// A secret API token. `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token of at least [`MIN_TOKEN_CHARS`] visible ASCII characters.
    pub fn new(text: &str) -> Result<Token, String> {
        if text.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!("a token must be at least {MIN_TOKEN_CHARS} characters"));
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err("a token may contain only visible ASCII characters (no spaces)".into());
        }
        Ok(Token(text.to_string()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Who may call what.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: Vec<Token>,
    /// Accept writes without a token (only when no tokens are configured); the
    /// server warns at start.
    pub insecure_no_auth: bool,
    /// Reads need a token too.
    pub protect_reads: bool,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this call needs an Authorization: Bearer <token> header (gRPC: authorization metadata)")]
    Missing,
    #[error("the Authorization header must be \"Bearer <token>\"")]
    Malformed,
    #[error("the bearer token is not valid")]
    Rejected,
}

/// Whether a call reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Auth {
    pub fn new(tokens: Vec<Token>, insecure_no_auth: bool) -> Auth {
        Auth { tokens, insecure_no_auth, protect_reads: false }
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Checks the `Authorization` value of a call (`None` when absent).
    pub fn check(&self, access: Access, header: Option<&[u8]>) -> Result<(), AuthError> {
        if access == Access::Read && !self.protect_reads {
            return Ok(());
        }
        if self.tokens.is_empty() && self.insecure_no_auth {
            return Ok(());
        }
        let header = header.ok_or(AuthError::Missing)?;
        let presented = bearer(header).ok_or(AuthError::Malformed)?;
        let mut matched = subtle::Choice::from(0);
        for token in &self.tokens {
            matched |= token.0.as_bytes().ct_eq(presented);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::Rejected)
        }
    }
}

/// The token of `Bearer <token>` (the scheme in any case).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            vec![Token::new("first-token-0123456789").unwrap(), Token::new("second-token-0123456789").unwrap()],
            false,
        )
    }

    #[test]
    fn writes_need_a_known_bearer_token() {
        let a = auth();
        assert_eq!(a.check(Access::Read, None), Ok(()));
        assert_eq!(a.check(Access::Write, None), Err(AuthError::Missing));
        assert_eq!(a.check(Access::Write, Some(b"Basic abc")), Err(AuthError::Malformed));
        assert_eq!(a.check(Access::Write, Some(b"Bearer ")), Err(AuthError::Malformed));
        assert_eq!(a.check(Access::Write, Some(b"Bearer second-token-012345678")), Err(AuthError::Rejected));
        assert_eq!(a.check(Access::Write, Some(b"bearer second-token-0123456789")), Ok(()));
        assert_eq!(a.check(Access::Write, Some(b"Bearer first-token-0123456789")), Ok(()));
    }

    #[test]
    fn reads_can_be_protected_and_insecure_mode_accepts_all() {
        let mut a = auth();
        a.protect_reads = true;
        assert_eq!(a.check(Access::Read, None), Err(AuthError::Missing));
        let open = Auth::new(Vec::new(), true);
        assert_eq!(open.check(Access::Write, None), Ok(()));
        assert_eq!(format!("{:?}", auth()).matches("***").count(), 2);
    }
}
