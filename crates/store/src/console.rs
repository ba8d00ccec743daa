//! The console's logins: users (replicated with the application's data, so an
//! admin made on one site logs in on all of them) and sessions (kept by the
//! site where the login happened, in its site-local state).
//!
//! The store only keeps what it is given: password hashes are made and checked
//! by the server (argon2), and a session is found by the hash of its cookie's
//! token, never by the token itself.

use std::fmt;

use crate::model::Micros;

/// A console user.
#[derive(Clone, PartialEq)]
pub struct ConsoleUser {
    pub name: String,
    /// A PHC string (`$argon2id$…`).
    pub password_hash: String,
    pub version: i64,
    pub updated_at: Micros,
}

impl fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("password_hash", &"***")
            .field("version", &self.version)
            .finish()
    }
}

/// A new login session.
#[derive(Clone)]
pub struct NewSession {
    /// Hex SHA-256 of the cookie's token.
    pub token_hash: String,
    pub user: String,
    /// The session's CSRF token, required on every change it makes.
    pub csrf: String,
    pub expires_at: Micros,
}

/// A live session (not expired, and its user still exists).
#[derive(Clone, PartialEq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    pub expires_at: Micros,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("user", &self.user).field("csrf", &"***").finish()
    }
}

/// An event as the status page lists it (without its payload).
#[derive(Debug, Clone, PartialEq)]
pub struct RecentEvent {
    pub id: String,
    pub kind: String,
    pub user: Option<String>,
    pub site: String,
    pub received_at: Micros,
}

/// Checks a console user name: 1 to 64 visible characters, no spaces.
pub fn user_name(name: &str) -> Result<(), crate::StoreError> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err(crate::StoreError::invalid("name", "must be 1 to 64 characters"));
    }
    if !name.chars().all(|c| !c.is_whitespace() && !c.is_control()) {
        return Err(crate::StoreError::invalid("name", "may not contain spaces or control characters"));
    }
    Ok(())
}
