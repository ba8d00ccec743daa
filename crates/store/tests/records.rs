//! Records and events behave alike on PostgreSQL and SQLite.

mod common;

use std::collections::BTreeMap;

use common::{both, uuid};
use dugong_store::{EventInput, Expect, Input, Kind, ListQuery, Micros, Record, StoreError};
use serde_json::json;

#[tokio::test]
async fn every_kind_round_trips_with_versions() {
    for t in both("records_round_trip").await {
        let s = &t.store;
        let engine = s.engine();
        let app = uuid();
        let put = s.put(&Input::app(&app, "Journal", "the EHR").unwrap(), Expect::Any).await.unwrap();
        assert_eq!(put.version(), 1, "{engine}");
        let again = s.put(&Input::app(&app, "Journal 2", "").unwrap(), Expect::Any).await.unwrap();
        assert_eq!(again.version(), 2, "{engine}");
        let Some(Record::App(got)) = s.get(Kind::App, &app).await.unwrap() else { panic!("{engine}: app missing") };
        assert_eq!((got.name.as_str(), got.version), ("Journal 2", 2));
        assert!(got.updated_at > Micros(0));

        let flow = uuid();
        let f = s.put(&Input::flow(&flow, &app, "login", "click 'OK'\n").unwrap(), Expect::Absent).await.unwrap();
        let Record::Flow(f) = f else { panic!() };
        assert_eq!((f.app_id.as_str(), f.script.as_str()), (app.as_str(), "click 'OK'\n"));

        let value = json!({"theme": "dark", "n": [1, 2.5, null]});
        let Record::Setting(set) = s.put(&Input::setting("ui.theme", &value).unwrap(), Expect::Any).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(set.value, value, "{engine}");

        let values: BTreeMap<String, String> = [("patient".to_string(), "0101-1234".to_string())].into();
        let Record::Context(ctx) =
            s.put(&Input::context("alice@example", &values).unwrap(), Expect::Any).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(ctx.values, values);

        // Deleting the app deletes its flows.
        assert_eq!(s.delete(Kind::App, &app, Expect::Version(2)).await.unwrap(), 2);
        assert!(s.get(Kind::Flow, &flow).await.unwrap().is_none(), "{engine}");
        assert!(matches!(s.delete(Kind::App, &app, Expect::Any).await, Err(StoreError::NotFound { .. })));
    }
}

#[tokio::test]
async fn writes_expecting_a_version_conflict_when_it_moved() {
    for t in both("records_conflict").await {
        let s = &t.store;
        let input = Input::setting("k", &json!(1)).unwrap();
        s.put(&input, Expect::Absent).await.unwrap();
        match s.put(&input, Expect::Absent).await {
            Err(StoreError::Conflict { expected: 0, current: 1, .. }) => {}
            other => panic!("{}: {other:?}", s.engine()),
        }
        s.put(&input, Expect::Version(1)).await.unwrap();
        match s.put(&input, Expect::Version(1)).await {
            Err(StoreError::Conflict { expected: 1, current: 2, .. }) => {}
            other => panic!("{}: {other:?}", s.engine()),
        }
        match s.delete(Kind::Setting, "k", Expect::Version(1)).await {
            Err(StoreError::Conflict { expected: 1, current: 2, .. }) => {}
            other => panic!("{}: {other:?}", s.engine()),
        }
        let Some(Record::Setting(kept)) = s.get(Kind::Setting, "k").await.unwrap() else { panic!() };
        assert_eq!(kept.version, 2);
        assert!(matches!(s.put(&input, Expect::Version(5)).await, Err(StoreError::Conflict { current: 2, .. })));
        s.delete(Kind::Setting, "k", Expect::Version(2)).await.unwrap();
        assert!(matches!(s.put(&input, Expect::Version(2)).await, Err(StoreError::NotFound { .. })));
    }
}

#[tokio::test]
async fn lists_page_in_key_order_and_flows_filter_by_app() {
    for t in both("records_pages").await {
        let s = &t.store;
        for i in 0..7 {
            s.put(&Input::setting(&format!("k{i}"), &json!(i)).unwrap(), Expect::Any).await.unwrap();
        }
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page =
                s.list(Kind::Setting, &ListQuery { after: after.clone(), limit: 3, app_id: None }).await.unwrap();
            keys.extend(page.items.iter().map(|r| r.key().to_string()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4", "k5", "k6"], "{}", s.engine());

        let (a, b) = (uuid(), uuid());
        for app in [&a, &b] {
            // App names are unique: each its own.
            s.put(&Input::app(app, app, "").unwrap(), Expect::Any).await.unwrap();
            s.put(&Input::flow(&uuid(), app, "f", "").unwrap(), Expect::Any).await.unwrap();
        }
        let page = s.list(Kind::Flow, &ListQuery { limit: 10, app_id: Some(a.clone()), ..Default::default() }).await;
        let page = page.unwrap();
        assert_eq!(page.items.len(), 1);
        let Record::Flow(f) = &page.items[0] else { panic!() };
        assert_eq!(f.app_id, a);
        let err = s.put(&Input::flow(&uuid(), &uuid(), "orphan", "").unwrap(), Expect::Any).await.unwrap_err();
        assert_eq!(err.to_string(), "app_id: no app with this id", "{}", s.engine());
    }
}

#[tokio::test]
async fn a_retried_post_stores_each_event_once() {
    for t in both("records_events").await {
        let s = &t.store;
        let batch: Vec<EventInput> = (0..5)
            .map(|i| {
                EventInput::new(
                    i,
                    &uuid(),
                    "flow.started",
                    Some("alice"),
                    None,
                    Some(Micros(1_700_000_000_123_456)),
                    &json!({"i": i}),
                )
                .unwrap()
            })
            .collect();
        let first = s.post_events(&batch[..3]).await.unwrap();
        assert_eq!((first.accepted, first.duplicates), (3, 0));
        let retry = s.post_events(&batch).await.unwrap();
        assert_eq!((retry.accepted, retry.duplicates), (2, 3), "{}", s.engine());
        let page = s.list_events(None, 100).await.unwrap();
        assert_eq!(page.items.len(), 5);
        let e = &page.items[0];
        assert_eq!((e.site.as_str(), e.occurred_at), ("s0", Some(Micros(1_700_000_000_123_456))), "{}", s.engine());
    }
}
