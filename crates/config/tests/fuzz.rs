//! Hostile configuration files: arbitrary text, and JSON built from the
//! file's own field names with values of every shape. Loading never panics,
//! and every refusal names a reason (and a field or position when there is
//! one to name).
//!
//! CI runs a bounded number of cases (`DUGONG_FUZZ_CASES`, 64 by default);
//! `cargo test -p dugong-config --test fuzz -- --ignored` runs a long one.

use std::path::Path;

use dugong_config::Config;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

fn cases(default: u32) -> u32 {
    std::env::var("DUGONG_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// A JSON value of any shape, a few levels deep.
fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        prop_oneof![
            Just("all".to_string()),
            Just("env".to_string()),
            Just("verify-full".to_string()),
            Just("sqlite:/tmp/x.db".to_string()),
            Just("postgres://u:p@h:5/d?sslmode=require".to_string()),
            ".{0,24}",
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the file uses, and some it does not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "databases",
            "syncs",
            "id",
            "dbname",
            "host",
            "port",
            "user",
            "pass",
            "url",
            "sslmode",
            "sslrootcert",
            "sources",
            "targets",
            "tables",
            "onetimecopy",
            "name",
            "conflict_strategy",
            "autokick",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,12}",
    ]
}

/// A whole file: mostly the right shape, with values of any shape.
fn file() -> impl Strategy<Value = String> {
    let database = prop::collection::btree_map(key(), value(), 0..8);
    let sync = prop::collection::btree_map(key(), value(), 0..8);
    (prop::collection::vec(database, 0..4), prop::collection::vec(sync, 0..3), prop::option::of(value())).prop_map(
        |(databases, syncs, extra)| {
            let mut top = serde_json::json!({"databases": databases, "syncs": syncs});
            if let Some(extra) = extra {
                top["extra"] = extra;
            }
            top.to_string()
        },
    )
}

/// Loads `text`; a refusal must say why.
fn load(text: &str) -> Result<(), TestCaseError> {
    // BUCARDO_DB<n> is looked up for "pass": "env"; whatever the process has is fine.
    match Config::from_str(text, Path::new("fuzz.json")) {
        Ok(config) => {
            prop_assert!(!config.databases.is_empty() && !config.syncs.is_empty());
        }
        Err(err) => {
            prop_assert!(!err.reason.trim().is_empty(), "a refusal without a reason: {err:?}");
            prop_assert!(err.to_string().contains("fuzz.json"), "the file is named: {err}");
        }
    }
    Ok(())
}

fn run(cases: u32) {
    let mut runner = TestRunner::new(RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() });
    runner.run(&".{0,200}", |text| load(&text)).unwrap();
    runner.run(&file(), |text| load(&text)).unwrap();
    // Valid files with one value replaced by any other JSON.
    let base = r#"{"databases": [{"id": 0, "url": "sqlite:/tmp/a.db"}, {"id": 1, "url": "sqlite:/tmp/b.db"}],
                   "syncs": [{"sources": [0, 1], "tables": "all"}]}"#;
    let paths = ["/databases/0/id", "/databases/1/url", "/syncs/0/sources", "/syncs/0/tables", "/syncs/0"];
    runner
        .run(&(prop::sample::select(paths.to_vec()), value()), |(path, v)| {
            let mut doc: serde_json::Value = serde_json::from_str(base).unwrap();
            if let Some(slot) = doc.pointer_mut(path) {
                *slot = v;
            }
            load(&doc.to_string())
        })
        .unwrap();
}

#[test]
fn hostile_files_are_refused_with_a_reason_and_never_panic() {
    run(cases(64));
}

#[test]
#[ignore = "long run: cargo test -p dugong-config --test fuzz -- --ignored"]
fn hostile_files_long_run() {
    run(cases(20_000));
}
