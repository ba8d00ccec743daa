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
