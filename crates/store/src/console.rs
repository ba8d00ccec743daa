//! The console's logins: users (replicated with the application's data, so an
//! admin made on one site logs in on all of them) and sessions (kept by the
//! site where the login happened, in its site-local state).
//!
//! A session is live while its user exists, is not disabled, and still has
//! the session epoch it had at login: changing a password, disabling a user
//! or ending its sessions bumps the epoch on the (replicated) user row, which
//! ends that user's sessions on every site once the row has arrived there.
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
    /// A disabled user cannot log in, and has no live sessions.
    pub disabled: bool,
    /// Sessions made at another epoch are over.
    pub session_epoch: i64,
    pub version: i64,
    pub updated_at: Micros,
}

impl fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("password_hash", &"***")
            .field("disabled", &self.disabled)
            .field("session_epoch", &self.session_epoch)
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
    /// The user's session epoch at login.
    pub user_epoch: i64,
    /// The address the login came from.
    pub peer: String,
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

/// A live session of this site, as the console lists it. The token's hash
/// identifies it (to revoke it); the hash cannot log anyone in.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub token_hash: String,
    pub user: String,
    pub peer: String,
    pub created_at: Micros,
    pub expires_at: Micros,
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

/// A change to a console user.
#[derive(Clone, PartialEq, Eq)]
pub enum UserUpdate {
    /// A new password hash; `action` says whether the user changed their own
    /// ([`Action::PasswordChange`]) or an administrator reset it.
    Password { hash: String, action: crate::audit::Action },
    /// Disable (ending every session) or enable the user.
    Disabled(bool),
    /// End every session of the user, on every site.
    EndSessions,
}

impl fmt::Debug for UserUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserUpdate::Password { action, .. } => write!(f, "Password({action}, ***)"),
            UserUpdate::Disabled(d) => write!(f, "Disabled({d})"),
            UserUpdate::EndSessions => f.write_str("EndSessions"),
        }
    }
}

/// The error for a user that exists already.
pub(crate) fn exists(current: Option<ConsoleUser>, name: &str) -> crate::StoreError {
    crate::StoreError::Conflict {
        kind: "user",
        key: name.to_string(),
        expected: 0,
        current: current.map_or(0, |u| u.version),
    }
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
