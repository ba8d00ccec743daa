//! The audit log on both engines: every audited change writes exactly one
//! entry with the change (none when the change is refused), entries carry who,
//! from where and which version, and reads filter and page newest first.

mod common;

use common::{both, uuid};
use dugong_store::{Action, Actor, ActorKind, AuditCursor, AuditQuery, Expect, Input, Kind, NewAudit};

fn query() -> AuditQuery {
    AuditQuery { limit: 100, ..Default::default() }
}

#[tokio::test]
async fn changes_write_their_entry_with_them() {
    for t in both("audit_changes").await {
        let s = &t.store;
        let engine = s.engine();
        let ci = Actor::new("ci", ActorKind::Token, "10.0.0.7");
        let app = uuid();
        s.put_as(&ci, &Input::app(&app, "Journal", "").unwrap(), Expect::Absent).await.unwrap();
        s.put_as(&ci, &Input::app(&app, "Journal 2", "").unwrap(), Expect::Version(1)).await.unwrap();
        // Refused writes record nothing.
        assert!(s.put_as(&ci, &Input::app(&app, "late", "").unwrap(), Expect::Version(1)).await.is_err());
        assert!(s.delete_as(&ci, Kind::App, &app, Expect::Version(1)).await.is_err());
        s.delete_as(&ci, Kind::App, &app, Expect::Version(2)).await.unwrap();
        // Unaudited writes (tools, tests) record nothing either.
        s.put(&Input::setting("k", &serde_json::json!(1)).unwrap(), Expect::Any).await.unwrap();

        let page = s.audit(&query()).await.unwrap();
        let seen: Vec<(&str, &str, Option<i64>)> =
            page.items.iter().map(|e| (e.action.as_str(), e.key.as_str(), e.version)).collect();
        assert_eq!(
            seen,
            [("delete", app.as_str(), Some(2)), ("update", app.as_str(), Some(2)), ("create", app.as_str(), Some(1))],
            "{engine}"
        );
        let e = &page.items[0];
        assert_eq!(
            (e.site.as_str(), e.actor.as_str(), e.actor_kind.as_str(), e.peer.as_str(), e.resource.as_str()),
            ("s0", "ci", "token", "10.0.0.7", "apps"),
            "{engine}"
        );
        assert!(page.next.is_none(), "{engine}");
    }
}

#[tokio::test]
async fn reads_filter_and_page_newest_first() {
    for t in both("audit_reads").await {
        let s = &t.store;
        let engine = s.engine();
        for i in 0..5 {
            let actor = if i % 2 == 0 { "alice" } else { "bob" };
            let action = if i < 3 { Action::LoginFailed } else { Action::Login };
            let entry = NewAudit {
                actor: Actor::new(actor, ActorKind::User, "127.0.0.1"),
                action,
                resource: dugong_store::audit::CONSOLE.into(),
                key: actor.into(),
                version: None,
                detail: format!("n{i}"),
            };
            s.append_audit(&entry).await.unwrap();
        }
        let alice = s.audit(&AuditQuery { actor: Some("alice".into()), ..query() }).await.unwrap();
        let details: Vec<&str> = alice.items.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["n4", "n2", "n0"], "{engine}: newest first");
        let failed = s.audit(&AuditQuery { action: Some(Action::LoginFailed), ..query() }).await.unwrap();
        assert_eq!(failed.items.len(), 3, "{engine}");

        // Pages of two, each after the last.
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = s.audit(&AuditQuery { limit: 2, after: after.clone(), ..query() }).await.unwrap();
            pages.push(page.items.iter().map(|e| e.detail.clone()).collect::<Vec<_>>());
            match page.next {
                Some(token) => after = Some(AuditCursor::parse("page_token", &token).unwrap()),
                None => break,
            }
        }
        assert_eq!(pages, [vec!["n4", "n3"], vec!["n2", "n1"], vec!["n0"]], "{engine}");
        let later = s.audit(&AuditQuery { since: Some(dugong_store::Micros::now()), ..query() }).await.unwrap();
        assert!(later.items.is_empty(), "{engine}");
    }
}
