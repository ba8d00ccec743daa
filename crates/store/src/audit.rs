//! The audit log: who changed what, from where, and every login, failed
//! login, logout and lockout. It lives with the application's data
//! (`dugong_app.audit_log`), so it replicates to every site and survives a
//! site's loss; writes through the API record their entry in the same
//! statement (PostgreSQL) or transaction (SQLite) as the change itself, so
//! there is never a change without its entry.
//!
//! An entry names the record changed and its new version, never the values
//! written: the record itself holds those, and a log of values would be a
//! second copy of every secret a setting may hold.

use std::fmt;

use crate::error::StoreError;
use crate::model::Micros;

/// Who did something: a token's name, a console user, or an operator at the
/// command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The token's name, the user's name, or the operator's login.
    pub name: String,
    pub kind: ActorKind,
    /// The peer's address (`10.0.0.7`); empty when there is none (the CLI).
    pub peer: String,
}

impl Actor {
    pub fn new(name: impl Into<String>, kind: ActorKind, peer: impl Into<String>) -> Actor {
        Actor { name: name.into(), kind, peer: peer.into() }
    }
}

/// What kind of [`Actor`] it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// An API caller with a bearer token (named by the token's name).
    Token,
    /// An API caller without a token, on a server that accepts that.
    Anonymous,
    /// A console user.
    User,
    /// An operator running `dugong` at the command line.
    Cli,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Token => "token",
            ActorKind::Anonymous => "anonymous",
            ActorKind::User => "user",
            ActorKind::Cli => "cli",
        }
    }
}

/// What was done. The names are stored and filtered on; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Update,
    Delete,
    Login,
    LoginFailed,
    Logout,
    /// Failed logins reached the limit: an account or an address must wait.
    Lockout,
    /// A user changed their own password.
    PasswordChange,
    /// An administrator set another user's password.
    PasswordReset,
    Disable,
    Enable,
    /// Every session of a user ended, on every site.
    EndSessions,
    /// One session ended by an administrator.
    RevokeSession,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Login,
        Action::LoginFailed,
        Action::Logout,
        Action::Lockout,
        Action::PasswordChange,
        Action::PasswordReset,
        Action::Disable,
        Action::Enable,
        Action::EndSessions,
        Action::RevokeSession,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::Logout => "logout",
            Action::Lockout => "lockout",
            Action::PasswordChange => "password_change",
            Action::PasswordReset => "password_reset",
            Action::Disable => "disable",
            Action::Enable => "enable",
            Action::EndSessions => "end_sessions",
            Action::RevokeSession => "revoke_session",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource of console logins and of users, beside the record kinds
/// (`apps`, …).
pub const CONSOLE: &str = "console";
pub const USERS: &str = "users";
pub const SESSIONS: &str = "sessions";

/// An entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub actor: Actor,
    pub action: Action,
    /// `apps`, `flows`, `settings`, `contexts`, [`USERS`], [`SESSIONS`] or
    /// [`CONSOLE`].
    pub resource: String,
    /// The record's key, the user's name; empty when there is none.
    pub key: String,
    /// The record's version after the change (before it, for a delete).
    pub version: Option<i64>,
    /// A short note: which limit a lockout hit, why a login failed. Never a
    /// value, a password or a token.
    pub detail: String,
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: String,
    pub at: Micros,
    /// The site whose server recorded it.
    pub site: String,
    pub actor: String,
    pub actor_kind: String,
    pub peer: String,
    pub action: String,
    pub resource: String,
    pub key: String,
    pub version: Option<i64>,
    pub detail: String,
}

/// Which entries a read returns: newest first, each filter optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub resource: Option<String>,
    pub key: Option<String>,
    pub site: Option<String>,
    /// At or after this time.
    pub since: Option<Micros>,
    /// Before this time.
    pub until: Option<Micros>,
    /// Only entries after this page token (a previous page's `next`).
    pub after: Option<AuditCursor>,
    pub limit: u32,
}

/// Where a page of the audit log ended: the last entry's time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub at: Micros,
    pub id: String,
}

impl AuditCursor {
    /// The page token: `<micros>.<id>`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.at.0, self.id)
    }

    /// A page token read back; anything else is refused naming `field`.
    pub fn parse(field: &str, token: &str) -> Result<AuditCursor, StoreError> {
        let bad = || StoreError::invalid(field, "not a page token of the audit log");
        let (at, id) = token.split_once('.').ok_or_else(bad)?;
        let at = at.parse().map_err(|_| bad())?;
        let id = crate::validate::uuid(field, id).map_err(|_| bad())?;
        Ok(AuditCursor { at: Micros(at), id })
    }
}

/// A page of `items`, fetched with one row more than the page holds, which
/// tells whether more follow.
pub(crate) fn page(items: &mut Vec<AuditEntry>, fetch: i64) -> crate::model::Page<AuditEntry> {
    let next = if items.len() as i64 == fetch {
        items.pop();
        items.last().map(|e| AuditCursor { at: e.at, id: e.id.clone() }.token())
    } else {
        None
    };
    crate::model::Page { items: std::mem::take(items), next }
}

/// An entry's id: random, so entries made on different sites never collide.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("drop"), None);
    }

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_named() {
        let cursor = AuditCursor { at: Micros(1_700_000_000_000_001), id: new_id() };
        assert_eq!(AuditCursor::parse("page_token", &cursor.token()).unwrap(), cursor);
        for bad in ["", "x", "12", "12.not-a-uuid", "a.b"] {
            let err = AuditCursor::parse("page_token", bad).unwrap_err().to_string();
            assert!(err.starts_with("page_token: "), "{err}");
        }
    }
}
