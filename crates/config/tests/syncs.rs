//! Sync entries: names, tables, onetimecopy, conflict strategies, and every
//! rule `validate` enforces, each error checked for its field, reason and line.

use std::path::Path;
use std::time::Duration;

use dugong_config::{
    Config, ConfigError, OneTimeCopy, TableRef, TableSelection, DEFAULT_BACKLOG_ALERT, DEFAULT_CONFLICT_RETENTION,
};
use dugong_core::{ConflictStrategy, DbId, SyncName};

/// Three databases (ids 0, 1, 2) on lines 2-4, then `syncs` from line 5 on.
fn load(syncs: &str) -> Result<Config, ConfigError> {
    let text = format!(
        r#"{{"databases": [
  {{"id": 0, "dbname": "app", "host": "a.test", "user": "app"}},
  {{"id": 1, "dbname": "app", "host": "b.test", "user": "app"}},
  {{"id": 2, "dbname": "app", "host": "c.test", "user": "app"}}],
 "syncs": {syncs}}}"#
    );
    Config::from_str(&text, Path::new("/etc/dugong/bucardo.json"))
}

fn error(syncs: &str) -> ConfigError {
    match load(syncs) {
        Ok(_) => panic!("{syncs}: loaded, expected an error"),
        Err(err) => err,
    }
}

/// The error is at `field`, its reason contains `reason`, and the message
/// shows both.
fn assert_error(syncs: &str, field: &str, reason: &str) -> ConfigError {
    let err = error(syncs);
    assert_eq!(err.field.as_deref(), Some(field), "{syncs}: {err}");
    assert!(err.reason.contains(reason), "{syncs}: {err} lacks {reason:?}");
    let shown = err.to_string();
    assert!(shown.contains(&format!("{field}: ")) && shown.contains(reason), "{shown}");
    err
}

#[test]
fn names_default_to_sync_index() {
    let config = load(
        r#"[{"sources": [0, 1], "tables": "all"},
  {"name": "Orders-2_b", "sources": [2], "targets": [0], "tables": "orders"}]"#,
    )
    .unwrap();
    assert_eq!(config.syncs[0].name, SyncName("sync0".into()));
    assert_eq!(config.syncs[1].name, SyncName("Orders-2_b".into()));
    assert_eq!(config.syncs[1].index, 1);
    assert_eq!(config.sync("Orders-2_b").map(|s| s.index), Some(1));
    assert_eq!(config.databases_in_syncs(), vec![DbId(0), DbId(1), DbId(2)]);
}

#[test]
fn tables_lists_and_onetimecopy_forms() {
    let config = load(
        r#"[{"sources": [0], "targets": [1], "tables": " client, public.Product ,\"My T\"", "onetimecopy": "2"},
  {"sources": [0], "targets": [2], "tables": "ALL", "onetimecopy": 1}]"#,
    )
    .unwrap();
    let TableSelection::List(tables) = &config.syncs[0].tables else { panic!("expected a list") };
    assert_eq!(
        tables,
        &vec![
            TableRef { schema: None, name: "client".into(), quoted: false, schema_quoted: false },
            TableRef { schema: Some("public".into()), name: "Product".into(), quoted: false, schema_quoted: false },
            TableRef { schema: None, name: "My T".into(), quoted: true, schema_quoted: false },
        ]
    );
    assert_eq!(config.syncs[0].onetimecopy, OneTimeCopy::EmptyOnly);
    assert_eq!(config.syncs[1].tables, TableSelection::All);
    assert_eq!(config.syncs[1].onetimecopy, OneTimeCopy::Full);
}

#[test]
fn conflict_strategies() {
    let strategy = |written: &str| {
        let config = load(&format!(r#"[{{"sources": [0, 1, 2], "tables": "all", "conflict_strategy": {written}}}]"#))
            .unwrap_or_else(|err| panic!("{written}: {err}"));
        config.syncs[0].conflict_strategy.clone()
    };
    assert_eq!(strategy(r#""latest""#), ConflictStrategy::Latest);
    assert_eq!(strategy(r#""bucardo_latest""#), ConflictStrategy::Latest);
    assert_eq!(strategy(r#""default""#), ConflictStrategy::Latest);
    assert_eq!(strategy(r#""abort""#), ConflictStrategy::Abort);
    assert_eq!(strategy(r#""bucardo_abort""#), ConflictStrategy::Abort);
    let priority = ConflictStrategy::Priority(vec![DbId(2), DbId(0)]);
    assert_eq!(strategy("[2, 0]"), priority);
    assert_eq!(strategy(r#""db2 db0""#), priority);
    assert_eq!(strategy(r#""2,0""#), priority);
}

#[test]
fn conflict_retention_defaults_to_thirty_days_and_reads_durations() {
    let config = load(
        r#"[{"sources": [0, 1], "tables": "all"},
  {"sources": [1, 2], "tables": "all", "conflict_retention": "12h"}]"#,
    )
    .unwrap();
    assert_eq!(config.syncs[0].conflict_retention, DEFAULT_CONFLICT_RETENTION);
    assert_eq!(DEFAULT_CONFLICT_RETENTION, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(config.syncs[1].conflict_retention, Duration::from_secs(12 * 3600));
    let err = assert_error(
        r#"[{"sources": [0, 1], "tables": "all",
   "conflict_retention": "a month"}]"#,
        "syncs[0].conflict_retention",
        "must be a duration such as \"30d\"",
    );
    assert_eq!(err.line, Some(6));
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "conflict_retention": "0s"}]"#,
        "syncs[0].conflict_retention",
        "must be longer than zero",
    );
}

#[test]
fn backlog_alert_defaults_to_ten_gibibytes_and_reads_sizes() {
    let config = load(
        r#"[{"sources": [0, 1], "tables": "all"},
  {"sources": [1, 2], "tables": "all", "backlog_alert": "512MB"},
  {"sources": [0, 2], "tables": "all", "backlog_alert": "4096"}]"#,
    )
    .unwrap();
    assert_eq!(config.syncs[0].backlog_alert, DEFAULT_BACKLOG_ALERT);
    assert_eq!(DEFAULT_BACKLOG_ALERT, 10 * 1024 * 1024 * 1024);
    assert_eq!(config.syncs[1].backlog_alert, 512 * 1024 * 1024);
    assert_eq!(config.syncs[2].backlog_alert, 4096);
    let err = assert_error(
        r#"[{"sources": [0, 1], "tables": "all",
   "backlog_alert": "ten gigs"}]"#,
        "syncs[0].backlog_alert",
        "must be a size such as \"10GB\"",
    );
    assert_eq!(err.line, Some(6));
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "backlog_alert": "0GB"}]"#,
        "syncs[0].backlog_alert",
        "larger than zero",
    );
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "backlog_alert": "99999999999TB"}]"#,
        "syncs[0].backlog_alert",
        "must be a size",
    );
}

#[test]
fn bad_conflict_strategies() {
    let err = assert_error(
        r#"[{"sources": [0, 1], "tables": "all",
   "conflict_strategy": [1, 2]}]"#,
        "syncs[0].conflict_strategy[1]",
        "db2 (database id 2) is not a source of this sync, whose sources are db0, db1",
    );
    assert_eq!((err.line, err.column), (Some(6), Some(29)));
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "conflict_strategy": "db1 db2"}]"#,
        "syncs[0].conflict_strategy[1]",
        "db2 (database id 2) is not a source",
    );
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "conflict_strategy": "db1 db1"}]"#,
        "syncs[0].conflict_strategy[1]",
        "db1 is listed twice",
    );
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "conflict_strategy": []}]"#,
        "syncs[0].conflict_strategy",
        "empty priority list",
    );
    for word in ["bucardo_source", "bucardo_target", "bucardo_skip", "bucardo_random"] {
        let err = assert_error(
            &format!(r#"[{{"sources": [0, 1], "tables": "all", "conflict_strategy": "{word}"}}]"#),
            "syncs[0].conflict_strategy",
            "Bucardo 4",
        );
        assert!(err.reason.contains("use") || err.reason.contains("list them"), "{err}");
        assert_eq!(err.line, Some(5));
    }
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "conflict_strategy": "newest"}]"#,
        "syncs[0].conflict_strategy",
        "`newest` is neither a strategy",
    );
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "conflict_strategy": 3}]"#,
        "syncs[0].conflict_strategy",
        "invalid type",
    );
}

#[test]
fn sources_and_targets_rules() {
    assert_error(
        r#"[{"sources": [], "targets": [1], "tables": "all"}]"#,
        "syncs[0].sources",
        "a sync needs at least one source",
    );
    let err = assert_error(
        r#"[{"sources": [0, 7], "tables": "all"}]"#,
        "syncs[0].sources[1]",
        "database id 7 is not defined in \"databases\"",
    );
    assert_eq!((err.line, err.column), (Some(5), Some(28)));
    assert!(err
        .to_string()
        .ends_with("line 5 column 28: syncs[0].sources[1]: database id 7 is not defined in \"databases\""));
    assert_error(
        r#"[{"sources": [0], "targets": [9], "tables": "all"}]"#,
        "syncs[0].targets[0]",
        "database id 9 is not defined",
    );
    assert_error(r#"[{"sources": [0, 1, 0], "tables": "all"}]"#, "syncs[0].sources[2]", "already listed at [0]");
    assert_error(
        r#"[{"sources": [0], "targets": [1, 1], "tables": "all"}]"#,
        "syncs[0].targets[1]",
        "already listed at [0]",
    );
    assert_error(
        r#"[{"sources": [0, 1], "targets": [2, 1], "tables": "all"}]"#,
        "syncs[0].targets[1]",
        "database id 1 is also a source of this sync",
    );
    assert_error(r#"[{"sources": [0], "tables": "all"}]"#, "syncs[0].targets", "nothing to replicate to");
    assert_error(r#"[{"targets": [1], "tables": "all"}]"#, "syncs[0]", "missing field `sources`");
    assert_error(r#"[{"sources": [0, -1], "tables": "all"}]"#, "syncs[0].sources[1]", "invalid value");
}

#[test]
fn tables_and_onetimecopy_rules() {
    let err = assert_error(r#"[{"sources": [0, 1], "tables": ""}]"#, "syncs[0].tables", "empty");
    assert_eq!((err.line, err.column), (Some(5), Some(42)));
    assert_error(r#"[{"sources": [0, 1], "tables": "a,,b"}]"#, "syncs[0].tables", "entry 2 of the list is empty");
    assert_error(r#"[{"sources": [0, 1]}]"#, "syncs[0]", "missing field `tables`");
    let err = assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "onetimecopy": 3}]"#,
        "syncs[0].onetimecopy",
        "must be 0",
    );
    assert!(err.reason.ends_with("not 3"), "{err}");
    assert_eq!(err.line, Some(5));
    assert_error(r#"[{"sources": [0, 1], "tables": "all", "onetimecopy": "x"}]"#, "syncs[0].onetimecopy", "not \"x\"");
    assert_error(
        r#"[{"sources": [0, 1], "tables": "all", "onetimecopy": 1}]"#,
        "syncs[0].onetimecopy",
        "needs targets",
    );
}

#[test]
fn name_rules() {
    assert_error(r#"[{"name": "", "sources": [0, 1], "tables": "all"}]"#, "syncs[0].name", "empty");
    assert_error(r#"[{"name": "my sync", "sources": [0, 1], "tables": "all"}]"#, "syncs[0].name", "contains ' '");
    let err = assert_error(
        r#"[{"sources": [0, 1], "tables": "all"},
  {"name": "sync0", "sources": [1, 2], "tables": "all"}]"#,
        "syncs[1].name",
        "\"sync0\" is already the name of syncs[0]",
    );
    assert_eq!((err.line, err.column), (Some(6), Some(12)));
}

#[test]
fn structural_rules() {
    let err = Config::from_str(r#"{"databases": [], "syncs": []}"#, Path::new("c.json")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("databases"));
    assert!(err.reason.contains("no databases"), "{err}");
    let err = Config::from_str(r#"{"syncs": []}"#, Path::new("c.json")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("databases"));
    assert_eq!(err.line, None);
    let err = error("[]");
    assert_eq!(err.field.as_deref(), Some("syncs"));
    assert!(err.reason.contains("no syncs"), "{err}");
    assert_eq!((err.line, err.column), (Some(5), Some(11)));

    let text = r#"{"databases": [
  {"id": 0, "dbname": "app", "host": "a.test", "user": "app"},
  {"id": 0, "dbname": "app", "host": "b.test", "user": "app"}],
 "syncs": [{"sources": [0], "tables": "all"}]}"#;
    let err = Config::from_str(text, Path::new("c.json")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("databases[1].id"));
    assert!(err.reason.contains("database id 0 is already used by databases[0]"), "{err}");
    assert_eq!((err.line, err.column), (Some(3), Some(10)));

    let err = Config::from_str("  \n", Path::new("c.json")).unwrap_err();
    assert!(err.reason.contains("the file is empty"), "{err}");
    let err = Config::from_str("{\"databases\": [}", Path::new("c.json")).unwrap_err();
    assert_eq!((err.line, err.column), (Some(1), Some(16)), "{err}");
    let err = error(r#"[{"sources": [0, 1], "tables": "all",}]"#);
    assert_eq!(err.field.as_deref(), Some("syncs[0]"), "{err}");
    assert_eq!(err.reason, "trailing comma");
    assert_eq!(err.line, Some(5));
}

#[test]
fn validate_checks_a_config_built_in_code() {
    let mut config = load(r#"[{"sources": [0, 1], "tables": "all"}]"#).unwrap();
    config.validate().unwrap();
    config.syncs[0].targets.push(DbId(5));
    let err = config.validate().unwrap_err();
    assert_eq!(err.field.as_deref(), Some("syncs[0].targets[0]"));
    assert_eq!(err.line, None);
    assert!(err.reason.contains("database id 5 is not defined"), "{err}");
}
