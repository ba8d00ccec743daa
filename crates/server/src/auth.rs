//! Bearer tokens: writes (and reads, unless they are open) need
//! `Authorization: Bearer <token>`, in an HTTP header or gRPC metadata alike;
//! admin calls (the audit log) need an admin token.
//!
//! Every token has a name, which the audit log records as the actor: given in
//! the tokens file (`NAME TOKEN` on a line), or else `token-` and the first 8
//! hex digits of the token's SHA-256, which identifies it without revealing
//! it. Tokens are compared in constant time against every configured token
//! whatever matched, so timing tells an attacker nothing about a guess. No
//! token ever reaches a log or a `Debug` print.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

/// A secret API token and its name. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Token {
    name: String,
    secret: String,
    admin: bool,
}

impl Token {
    /// A token of at least [`MIN_TOKEN_CHARS`] visible ASCII characters, named
    /// by its fingerprint.
    pub fn new(text: &str) -> Result<Token, String> {
        if text.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!("a token must be at least {MIN_TOKEN_CHARS} characters"));
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err("a token may contain only visible ASCII characters (no spaces)".into());
        }
        let digest = Sha256::digest(text.as_bytes());
        let name = format!("token-{}", digest.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>());
        Ok(Token { name, secret: text.to_string(), admin: false })
    }

    /// A token with a name (letters, digits, `.`, `_`, `-`, `@`; 1 to 64).
    pub fn named(name: &str, text: &str) -> Result<Token, String> {
        let ok = !name.is_empty()
            && name.chars().count() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !ok {
            return Err("a token's name has 1 to 64 letters, digits, '.', '_', '-' or '@'".into());
        }
        Ok(Token { name: name.to_string(), ..Token::new(text)? })
    }

    /// The same token, allowed admin calls too.
    pub fn into_admin(mut self) -> Token {
        self.admin = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}{}, ***)", self.name, if self.admin { ", admin" } else { "" })
    }
}

/// Whether reads need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAccess {
    /// Open only while every API listener is on a loopback address; a token
    /// as soon as one listens on another network.
    #[default]
    Auto,
    /// Always a token.
    Token,
    /// Never a token (warned about at start when listening beyond loopback).
    Open,
}

/// Who may call what.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: Vec<Token>,
    /// Accept writes without a token (only when no tokens are configured); the
    /// server warns at start.
    pub insecure_no_auth: bool,
    pub reads: ReadAccess,
    /// Set by the server at start: every API listener is on loopback.
    loopback_only: bool,
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
    #[error("this call needs an admin token (--admin-tokens-file or DUGONG_ADMIN_TOKENS)")]
    NotAdmin,
}

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// Reading the audit log and the like.
    Admin,
}

/// Who a call came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A valid token, by its name.
    Token { name: String, admin: bool },
    /// No token (an open read, or a server without tokens).
    Anonymous,
}

impl Auth {
    pub fn new(tokens: Vec<Token>, insecure_no_auth: bool) -> Auth {
        Auth { tokens, insecure_no_auth, reads: ReadAccess::Auto, loopback_only: false }
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Tells the auto read rule whether every API listener is on loopback.
    pub fn set_loopback_only(&mut self, loopback_only: bool) {
        self.loopback_only = loopback_only;
    }

    /// Whether reads need a token, as configured and where the server listens.
    pub fn reads_need_token(&self) -> bool {
        match self.reads {
            ReadAccess::Token => true,
            ReadAccess::Open => false,
            ReadAccess::Auto => !self.loopback_only,
        }
    }

    /// Checks the `Authorization` value of a call (`None` when absent).
    pub fn check(&self, access: Access, header: Option<&[u8]>) -> Result<Caller, AuthError> {
        let open = match access {
            Access::Read => !self.reads_need_token() || (self.tokens.is_empty() && self.insecure_no_auth),
            Access::Write => self.tokens.is_empty() && self.insecure_no_auth,
            Access::Admin => false,
        };
        let Some(header) = header else {
            return if open { Ok(Caller::Anonymous) } else { Err(AuthError::Missing) };
        };
        let Some(presented) = bearer(header) else {
            return if open { Ok(Caller::Anonymous) } else { Err(AuthError::Malformed) };
        };
        // Every token is compared, whichever matches.
        let mut found = u64::MAX;
        for (i, token) in self.tokens.iter().enumerate() {
            found.conditional_assign(&(i as u64), token.secret.as_bytes().ct_eq(presented));
        }
        match self.tokens.get(found as usize) {
            Some(t) if access == Access::Admin && !t.admin => Err(AuthError::NotAdmin),
            Some(t) => Ok(Caller::Token { name: t.name.clone(), admin: t.admin }),
            None if open => Ok(Caller::Anonymous),
            None => Err(AuthError::Rejected),
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
        let mut a = Auth::new(
            vec![
                Token::new("first-token-0123456789").unwrap(),
                Token::named("ops", "second-token-0123456789").unwrap().into_admin(),
            ],
            false,
        );
        a.set_loopback_only(true);
        a
    }

    #[test]
    fn writes_need_a_known_bearer_token() {
        let a = auth();
        assert_eq!(a.check(Access::Read, None), Ok(Caller::Anonymous));
        assert_eq!(a.check(Access::Write, None), Err(AuthError::Missing));
        assert_eq!(a.check(Access::Write, Some(b"Basic abc")), Err(AuthError::Malformed));
        assert_eq!(a.check(Access::Write, Some(b"Bearer ")), Err(AuthError::Malformed));
        assert_eq!(a.check(Access::Write, Some(b"Bearer second-token-012345678")), Err(AuthError::Rejected));
        assert_eq!(
            a.check(Access::Write, Some(b"bearer second-token-0123456789")),
            Ok(Caller::Token { name: "ops".into(), admin: true })
        );
        let first = a.check(Access::Write, Some(b"Bearer first-token-0123456789")).unwrap();
        let Caller::Token { name, admin: false } = first else { panic!("{first:?}") };
        assert!(name.starts_with("token-") && name.len() == 14, "{name}");
    }

    #[test]
    fn admin_calls_need_an_admin_token() {
        let a = auth();
        assert_eq!(a.check(Access::Admin, None), Err(AuthError::Missing));
        assert_eq!(a.check(Access::Admin, Some(b"Bearer first-token-0123456789")), Err(AuthError::NotAdmin));
        assert!(a.check(Access::Admin, Some(b"Bearer second-token-0123456789")).is_ok());
        let open = Auth::new(Vec::new(), true);
        assert_eq!(open.check(Access::Admin, None), Err(AuthError::Missing), "never open");
    }

    #[test]
    fn reads_need_a_token_beyond_loopback_unless_opened() {
        let mut a = auth();
        a.set_loopback_only(false);
        assert_eq!(a.check(Access::Read, None), Err(AuthError::Missing));
        a.reads = ReadAccess::Open;
        assert_eq!(a.check(Access::Read, None), Ok(Caller::Anonymous));
        a.reads = ReadAccess::Token;
        a.set_loopback_only(true);
        assert_eq!(a.check(Access::Read, None), Err(AuthError::Missing));
        let open = Auth::new(Vec::new(), true);
        assert_eq!(open.check(Access::Write, None), Ok(Caller::Anonymous));
        assert_eq!(open.check(Access::Read, None), Ok(Caller::Anonymous));
        assert_eq!(format!("{:?}", auth()).matches("***").count(), 2);
        assert!(!format!("{:?}", auth()).contains("0123456789"));
    }

    #[test]
    fn names_are_checked() {
        assert!(Token::named("ci-runner@site0", "t-0123456789abcdef").is_ok());
        assert!(Token::named("has space", "t-0123456789abcdef").is_err());
        assert!(Token::named("ok", "short").is_err());
    }
}
