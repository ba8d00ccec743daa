//! Console users and sessions behave alike on PostgreSQL and SQLite: users
//! are versioned rows of the application's data, sessions are found by their
//! token's hash while they live and their user exists.

mod common;

use common::both;
use dugong_store::{Micros, NewSession};

/// A session made at the user's session epoch `epoch` (a password change
/// starts a new one).
fn session(hash: &str, user: &str, expires_at: Micros, epoch: i64) -> NewSession {
    NewSession {
        token_hash: hash.into(),
        user: user.into(),
        csrf: format!("csrf-{hash}"),
        expires_at,
        user_epoch: epoch,
        peer: "10.0.0.7".into(),
    }
}

#[tokio::test]
async fn users_and_sessions_round_trip() {
    for t in both("console_users").await {
        let s = &t.store;
        let engine = s.engine();
        assert!(s.console_user("admin").await.unwrap().is_none(), "{engine}");
        let u = s.put_console_user("admin", "$argon2id$first").await.unwrap();
        assert_eq!(u.version, 1, "{engine}");
        let u = s.put_console_user("admin", "$argon2id$second").await.unwrap();
        assert_eq!((u.version, u.password_hash.as_str()), (2, "$argon2id$second"), "{engine}");
        assert!(!format!("{u:?}").contains("second"), "Debug hides the hash");
        assert!(s.put_console_user("has space", "x").await.is_err(), "{engine}");

        let later = Micros(Micros::now().0 + 3_600_000_000);
        s.create_session(&session("h1", "admin", later, u.session_epoch)).await.unwrap();
        let live = s.session("h1").await.unwrap().expect("a live session");
        assert_eq!((live.user.as_str(), live.csrf.as_str()), ("admin", "csrf-h1"), "{engine}");
        assert!(s.session("h2").await.unwrap().is_none(), "{engine}: unknown hash");

        // Expired sessions are not found, and go when the next login comes.
        let past = Micros(Micros::now().0 - 1_000_000);
        s.create_session(&session("old", "admin", past, u.session_epoch)).await.unwrap();
        assert!(s.session("old").await.unwrap().is_none(), "{engine}: expired");
        // A session of a user that does not exist (deleted on another site) is dead.
        s.create_session(&session("ghost", "nobody", later, 0)).await.unwrap();
        assert!(s.session("ghost").await.unwrap().is_none(), "{engine}: no such user");

        s.delete_session("h1").await.unwrap();
        assert!(s.session("h1").await.unwrap().is_none(), "{engine}: logged out");
        assert!(s.recent_events(5).await.unwrap().is_empty(), "{engine}");
    }
}

/// Changing a password, disabling a user or ending its sessions ends every
/// session made before (through the user row's epoch); each change is in the
/// audit log; creating a user that exists is a conflict.
#[tokio::test]
async fn user_changes_end_sessions_and_are_audited() {
    use dugong_store::{Action, Actor, ActorKind, AuditQuery, StoreError, UserUpdate};
    for t in both("console_admin").await {
        let s = &t.store;
        let engine = s.engine();
        let admin = Actor::new("root", ActorKind::User, "127.0.0.1");
        let u = s.create_console_user("alice", "$argon2id$a", &admin).await.unwrap();
        assert!(matches!(
            s.create_console_user("alice", "$argon2id$b", &admin).await,
            Err(StoreError::Conflict { current: 1, .. })
        ));
        let later = Micros(Micros::now().0 + 3_600_000_000);
        let live = |hash: &'static str| async move { s.session(hash).await.unwrap().is_some() };

        s.create_session(&session("a1", "alice", later, u.session_epoch)).await.unwrap();
        assert!(live("a1").await, "{engine}");
        assert_eq!(s.console_sessions().await.unwrap().len(), 1, "{engine}");
        let reset = UserUpdate::Password { hash: "$argon2id$c".into(), action: Action::PasswordReset };
        let u = s.update_console_user("alice", &reset, &admin).await.unwrap();
        assert!(!live("a1").await, "{engine}: a new password ends the session");
        assert!(s.console_sessions().await.unwrap().is_empty(), "{engine}");

        s.create_session(&session("a2", "alice", later, u.session_epoch)).await.unwrap();
        let u = s.update_console_user("alice", &UserUpdate::Disabled(true), &admin).await.unwrap();
        assert!(u.disabled && !live("a2").await, "{engine}: disabled");
        let u = s.update_console_user("alice", &UserUpdate::Disabled(false), &admin).await.unwrap();
        assert!(!live("a2").await, "{engine}: enabling does not bring old sessions back");

        s.create_session(&session("a3", "alice", later, u.session_epoch)).await.unwrap();
        s.update_console_user("alice", &UserUpdate::EndSessions, &admin).await.unwrap();
        assert!(!live("a3").await, "{engine}: signed out everywhere");

        let u = s.console_user("alice").await.unwrap().unwrap();
        s.create_session(&session("a4", "alice", later, u.session_epoch)).await.unwrap();
        assert!(s.revoke_session("a4", "alice", &admin).await.unwrap(), "{engine}");
        assert!(!s.revoke_session("a4", "alice", &admin).await.unwrap(), "{engine}: already gone");
        s.delete_console_user("alice", &admin).await.unwrap();
        assert!(s.console_user("alice").await.unwrap().is_none(), "{engine}");
        assert!(matches!(
            s.update_console_user("alice", &UserUpdate::EndSessions, &admin).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(s.delete_console_user("alice", &admin).await, Err(StoreError::NotFound { .. })));

        let entries = s.audit(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap().items;
        let actions: Vec<(&str, &str)> =
            entries.iter().rev().map(|e| (e.action.as_str(), e.resource.as_str())).collect();
        assert_eq!(
            actions,
            [
                ("create", "users"),
                ("password_reset", "users"),
                ("disable", "users"),
                ("enable", "users"),
                ("end_sessions", "users"),
                ("revoke_session", "sessions"),
                ("delete", "users"),
            ],
            "{engine}"
        );
        assert!(entries.iter().all(|e| e.key == "alice" && e.actor == "root"), "{engine}");
    }
}
