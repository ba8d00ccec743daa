//! Lists for people, unique names and the history, alike on PostgreSQL and
//! SQLite: hundreds of records paged forward and back in both orders with
//! none missed or repeated, searches by name (and by a setting's value),
//! duplicate names refused, and every version kept and restorable.

mod common;

use std::collections::HashSet;

use common::{both, uuid};
use dugong_store::browse::From;
use dugong_store::{
    Actor, ActorKind, Browse, BrowsePage, Expect, HistoryQuery, Input, Kind, Record, Sort, Store, StoreError,
};
use serde_json::json;

fn who() -> Actor {
    Actor::new("alice", ActorKind::User, "127.0.0.1")
}

/// Every page of `kind` in `sort`, forward from the start; then backward
/// from the last page; the keys in the order shown each way.
async fn walk(s: &Store, kind: Kind, sort: Sort, search: Option<&str>, limit: u32) -> (Vec<String>, Vec<String>, i64) {
    let browse = |from| Browse { search: search.map(str::to_string), sort, from, limit, app_id: None };
    let mut forward = Vec::new();
    let mut from = From::Start;
    let last: BrowsePage = loop {
        let page = s.browse(kind, &browse(from.clone())).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        forward.extend(page.items.iter().map(|r| r.key().to_string()));
        match page.next.clone() {
            Some(c) => from = From::After(c),
            None => break page,
        }
    };
    let total = last.total;
    // Back from the last page, with Previous links, to the first.
    let mut backward: Vec<String> = last.items.iter().rev().map(|r| r.key().to_string()).collect();
    let mut previous = last.previous;
    while let Some(c) = previous {
        let page = s.browse(kind, &browse(From::Before(c))).await.unwrap();
        backward.extend(page.items.iter().rev().map(|r| r.key().to_string()));
        previous = page.previous;
    }
    backward.reverse();
    (forward, backward, total)
}

#[tokio::test]
async fn hundreds_of_records_page_forward_and_back_in_a_stable_order() {
    for t in both("browse_pages").await {
        let s = &t.store;
        let engine = s.engine();
        let mut apps = Vec::new();
        for i in 0..320 {
            let id = uuid();
            // Names that sort differently by case and number, and a group to search for.
            let name = if i % 10 == 0 { format!("Billing {i:03}") } else { format!("app {i:03}") };
            s.put(&Input::app(&id, &name, "").unwrap(), Expect::Absent).await.unwrap();
            apps.push((id, name));
        }
        let (forward, backward, total) = walk(s, Kind::App, Sort::Name, None, 50).await;
        assert_eq!(total, 320, "{engine}");
        assert_eq!(forward.len(), 320, "{engine}: every app once");
        assert_eq!(forward.iter().collect::<HashSet<_>>().len(), 320, "{engine}: none twice");
        assert_eq!(forward, backward, "{engine}: Previous retraces Next");
        let mut by_name = apps.clone();
        by_name.sort_by(|a, b| (a.1.to_lowercase(), &a.0).cmp(&(b.1.to_lowercase(), &b.0)));
        assert_eq!(forward, by_name.iter().map(|a| a.0.clone()).collect::<Vec<_>>(), "{engine}: by name, any case");

        // Last change first: the newest write leads.
        let (newest_id, _) = &apps[7];
        s.put(&Input::app(newest_id, "app 007 renamed", "").unwrap(), Expect::Any).await.unwrap();
        let (changed, changed_back, _) = walk(s, Kind::App, Sort::Changed, None, 64).await;
        assert_eq!(&changed[0], newest_id, "{engine}");
        assert_eq!(changed.len(), 320);
        assert_eq!(changed, changed_back, "{engine}");

        // Search: by part of the name, any case, with the total of matches.
        let (found, _, total) = walk(s, Kind::App, Sort::Name, Some("billing 1"), 5).await;
        assert_eq!(total, 10, "{engine}: Billing 100..190");
        assert_eq!(found.len(), 10);
        let page = s
            .browse(
                Kind::App,
                &Browse { search: Some("BILL".into()), sort: Sort::Name, from: From::Start, limit: 500, app_id: None },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 32, "{engine}");
        assert!(page.items.iter().all(|r| r.title().starts_with("Billing")));
    }
}

#[tokio::test]
async fn settings_are_found_by_value_and_flows_by_app() {
    for t in both("browse_search").await {
        let s = &t.store;
        for i in 0..120 {
            let value = if i == 77 { json!({"endpoint": "https://Ledger.example/api"}) } else { json!(i) };
            s.put(&Input::setting(&format!("key.{i:03}"), &value).unwrap(), Expect::Absent).await.unwrap();
        }
        let search =
            |q: &str| Browse { search: Some(q.into()), sort: Sort::Name, from: From::Start, limit: 50, app_id: None };
        let page = s.browse(Kind::Setting, &search("ledger.EXAMPLE")).await.unwrap();
        assert_eq!(page.items.iter().map(|r| r.key()).collect::<Vec<_>>(), vec!["key.077"], "{}", s.engine());
        assert_eq!(s.browse(Kind::Setting, &search("key.11")).await.unwrap().total, 10);

        let (a, b) = (uuid(), uuid());
        s.put(&Input::app(&a, "A", "").unwrap(), Expect::Absent).await.unwrap();
        s.put(&Input::app(&b, "B", "").unwrap(), Expect::Absent).await.unwrap();
        for (i, app) in [&a, &a, &b].iter().enumerate() {
            s.put(&Input::flow(&uuid(), app, &format!("flow {i}"), "").unwrap(), Expect::Absent).await.unwrap();
        }
        let of_a = Browse { app_id: Some(a.clone()), ..search("") };
        assert_eq!(s.browse(Kind::Flow, &of_a).await.unwrap().total, 2);
        let bad = Browse { limit: 0, ..search("") };
        assert!(matches!(s.browse(Kind::Flow, &bad).await, Err(StoreError::Invalid { .. })));
    }
}

#[tokio::test]
async fn names_are_unique_per_kind_and_per_app() {
    for t in both("browse_names").await {
        let s = &t.store;
        let engine = s.engine();
        let (a, b) = (uuid(), uuid());
        s.put_as(&who(), &Input::app(&a, "Billing", "").unwrap(), Expect::Absent).await.unwrap();
        match s.put_as(&who(), &Input::app(&b, "billing", "").unwrap(), Expect::Absent).await {
            Err(StoreError::Duplicate { kind: "app", holder, .. }) => assert_eq!(holder, a, "{engine}"),
            other => panic!("{engine}: a taken name (any case) must be refused: {other:?}"),
        }
        assert!(s.get(Kind::App, &b).await.unwrap().is_none(), "{engine}: nothing written");
        // Keeping one's own name, and renaming to a free one, are fine.
        s.put_as(&who(), &Input::app(&a, "Billing", "new description").unwrap(), Expect::Version(1)).await.unwrap();
        s.put_as(&who(), &Input::app(&b, "Billing 2", "").unwrap(), Expect::Absent).await.unwrap();
        let err = s.put(&Input::app(&b, "BILLING", "").unwrap(), Expect::Any).await.unwrap_err();
        assert!(err.to_string().contains("app name \"BILLING\" is taken"), "{engine}: {err}");
        // Flows: unique within their app only.
        let f1 = uuid();
        s.put(&Input::flow(&f1, &a, "login", "").unwrap(), Expect::Absent).await.unwrap();
        s.put(&Input::flow(&uuid(), &b, "login", "").unwrap(), Expect::Absent).await.unwrap();
        let err = s.put(&Input::flow(&uuid(), &a, "Login", "").unwrap(), Expect::Absent).await.unwrap_err();
        assert!(err.to_string().contains("flow name \"Login\" is taken in this app"), "{engine}: {err}");
        // Settings and contexts are named by their keys: nothing more to check.
        s.put(&Input::setting("x", &json!(1)).unwrap(), Expect::Any).await.unwrap();
    }
}

#[tokio::test]
async fn every_version_is_kept_and_a_deletion_can_be_undone() {
    for t in both("browse_history").await {
        let s = &t.store;
        let engine = s.engine();
        // A setting written before history began (no actor: no history).
        s.put(&Input::setting("ui", &json!({"dark": false})).unwrap(), Expect::Absent).await.unwrap();
        s.put_as(&who(), &Input::setting("ui", &json!({"dark": true})).unwrap(), Expect::Version(1)).await.unwrap();
        s.put_noted(&who(), &Input::setting("ui", &json!("x")).unwrap(), Expect::Version(2), "a note").await.unwrap();
        let q = HistoryQuery { kind: Kind::Setting, key: "ui".into(), after: None, limit: 10 };
        let versions = s.history(&q).await.unwrap().items;
        let seen: Vec<(i64, &str, &str)> =
            versions.iter().map(|e| (e.version, e.action.as_str(), e.detail.as_str())).collect();
        assert_eq!(seen, vec![(3, "update", "a note"), (2, "update", ""), (1, "recorded", "")], "{engine}");
        let value = |i: usize| match &versions[i].record {
            Some(Record::Setting(s)) => s.value.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!((value(0), value(1), value(2)), (json!("x"), json!({"dark": true}), json!({"dark": false})));
        assert_eq!((versions[0].site.as_str(), versions[0].actor.as_str()), ("s0", "alice"));
        assert_eq!(versions[2].site, "", "{engine}: the version before history began has no origin");
        // Paging the history.
        let first = s.history(&HistoryQuery { limit: 2, ..q.clone() }).await.unwrap();
        let token = first.next.expect("a second page");
        let after = dugong_store::AuditCursor::parse("after", &token).unwrap();
        let rest = s.history(&HistoryQuery { limit: 2, after: Some(after), ..q.clone() }).await.unwrap();
        assert_eq!(rest.items.len(), 1);

        // Deleting an app records its flows too; a version brings a record back.
        let (app, flow) = (uuid(), uuid());
        s.put_as(&who(), &Input::app(&app, "Journal", "EHR").unwrap(), Expect::Absent).await.unwrap();
        s.put_as(&who(), &Input::flow(&flow, &app, "open", "click 1\n").unwrap(), Expect::Absent).await.unwrap();
        s.delete_as(&who(), Kind::App, &app, Expect::Version(1)).await.unwrap();
        let flow_history = s
            .history(&HistoryQuery { kind: Kind::Flow, key: flow.clone(), after: None, limit: 10 })
            .await
            .unwrap()
            .items;
        assert_eq!(flow_history[0].action, "delete", "{engine}");
        assert_eq!(flow_history[0].detail, "deleted with its app");
        let app_history =
            s.history(&HistoryQuery { kind: Kind::App, key: app.clone(), after: None, limit: 10 }).await.unwrap().items;
        assert!(app_history[0].is_deletion());
        let entry = s.history_entry(&app_history[1].id).await.unwrap().expect("the version by id");
        let restored = entry.record.as_ref().unwrap().to_input().unwrap();
        let back = s.put_noted(&who(), &restored, Expect::Absent, "restored version 1").await.unwrap();
        assert_eq!(back.title(), "Journal", "{engine}");
        let flow_again = s.history_entry(&flow_history[1].id).await.unwrap().unwrap().record.unwrap();
        s.put_noted(&who(), &flow_again.to_input().unwrap(), Expect::Absent, "restored").await.unwrap();
        assert!(s.get(Kind::Flow, &flow).await.unwrap().is_some(), "{engine}: the flow is back");
        // Contexts keep no history.
        let ctx = Input::context("bob", &[("p".to_string(), "1".to_string())].into()).unwrap();
        s.put_as(&who(), &ctx, Expect::Any).await.unwrap();
        let none = s.history(&HistoryQuery { kind: Kind::Context, key: "bob".into(), after: None, limit: 5 }).await;
        assert!(none.unwrap().items.is_empty());
    }
}
