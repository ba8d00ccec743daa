//! Fields the file may not hold, and Bucardo's own options, which it may.

use std::path::Path;

use dugong_config::Config;

const SYNC_OPTIONS: &[&str] = &[
    "autokick",
    "checktime",
    "stayalive",
    "kidsalive",
    "lifetime",
    "maxkicks",
    "overdue",
    "expired",
    "rebuild_index",
    "analyze_after_copy",
    "vacuum_after_copy",
    "deletemethod",
    "strict_checking",
    "isolation_level",
    "status",
    "makedelta",
    "priority",
    "track_rates",
    "copyextra",
];

const DATABASE_OPTIONS: &[&str] =
    &["dbservice", "makedelta", "server_side_prepares", "dbconn", "status", "group", "dbgroup"];

fn options_json(names: &[&str]) -> String {
    names.iter().map(|name| format!(r#", "{name}": "x""#)).collect()
}

#[test]
fn bucardo_options_are_accepted_and_listed_as_ignored() {
    let text = format!(
        r#"{{"databases": [
  {{"id": 0, "dbname": "app", "host": "a.test", "user": "app"{}}},
  {{"id": 1, "dbname": "app", "host": "b.test", "user": "app"}}],
 "syncs": [{{"sources": [0, 1], "tables": "all"{}}}]}}"#,
        options_json(DATABASE_OPTIONS),
        options_json(SYNC_OPTIONS)
    );
    let config = Config::from_str(&text, Path::new("c.json")).unwrap();
    let expected: Vec<String> = DATABASE_OPTIONS
        .iter()
        .map(|name| format!("databases[0].{name}"))
        .chain(SYNC_OPTIONS.iter().map(|name| format!("syncs[0].{name}")))
        .collect();
    assert_eq!(config.ignored, expected);
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    let text = r#"{"databases": [
  {"id": 0, "dbname": "app", "host": "a.test", "user": "app"},
  {"id": 1, "dbname": "app", "host": "b.test", "user": "app"}],
 "syncs": [{"sources": [0, 1], "tables": "all",
            "conflict_stratgy": "abort"}]}"#;
    let err = Config::from_str(text, Path::new("/etc/dugong/bucardo.json")).unwrap_err();
    assert!(err.reason.contains("unknown field `conflict_stratgy`"), "{err}");
    assert!(err.reason.contains("conflict_strategy"), "the expected fields are listed: {err}");
    assert_eq!(err.field.as_deref(), Some("syncs[0].conflict_stratgy"), "{err}");
    assert_eq!(err.line, Some(5), "{err}");
    assert!(err.to_string().starts_with("config file /etc/dugong/bucardo.json, line 5 column"), "{err}");

    let text = r#"{"databases": [{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "password": "x"}],
 "syncs": []}"#;
    let err = Config::from_str(text, Path::new("c.json")).unwrap_err();
    assert!(err.reason.contains("unknown field `password`"), "{err}");
    assert_eq!(err.line, Some(1));

    let err = Config::from_str(r#"{"databases": [], "sync": []}"#, Path::new("c.json")).unwrap_err();
    assert!(err.reason.contains("unknown field `sync`"), "{err}");
}
