//! `"pass": "env"` reads the password from `BUCARDO_DB<id>`. Each test uses its
//! own database id, so tests running in parallel never share a variable.

use std::path::Path;

use dugong_config::{Config, ConfigError, Location};

fn load(id: u32) -> Result<Config, ConfigError> {
    let text = format!(
        r#"{{"databases": [
  {{"id": {id}, "dbname": "app", "host": "a.test", "user": "app", "pass": "env"}},
  {{"id": 1, "dbname": "app", "host": "b.test", "user": "app"}}],
 "syncs": [{{"sources": [{id}, 1], "tables": "all"}}]}}"#
    );
    Config::from_str(&text, Path::new("/etc/dugong/bucardo.json"))
}

#[test]
fn env_reads_the_password_from_bucardo_db_id() {
    std::env::set_var("BUCARDO_DB9101", "s3cret-from-env");
    let config = load(9101).unwrap();
    let Location::Postgres(target) = &config.databases[0].location else { panic!("expected PostgreSQL") };
    assert_eq!(target.config.get_password(), Some(&b"s3cret-from-env"[..]));
    assert_eq!(target.password.as_ref().map(|p| p.expose()), Some("s3cret-from-env"));
    // Nothing printable carries it.
    assert!(!format!("{config:?}").contains("s3cret"));
    assert!(!target.display.contains("s3cret"));
    // No "pass" at all: no password.
    let Location::Postgres(other) = &config.databases[1].location else { panic!("expected PostgreSQL") };
    assert_eq!(other.config.get_password(), None);
    assert!(other.password.is_none());
}

#[test]
fn env_without_the_variable_names_it() {
    std::env::remove_var("BUCARDO_DB9102");
    let err = load(9102).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("databases[0].pass"));
    assert!(err.reason.contains("BUCARDO_DB9102"), "{err}");
    assert!(err.reason.contains("not set"), "{err}");
    assert_eq!((err.line, err.column), (Some(2), Some(74)), "{err}");
}
