//! Database entries: Bucardo's fields with libpq keywords in `host`, and
//! Dugong's `url` and `sslmode`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dugong_config::{Config, ConfigError, Database, Location, PgTarget, SslMode};
use tokio_postgres::config::Host;

/// Loads a config whose database 0 is `entry`, plus a plain database 1 and a
/// sync between them.
fn load(entry: &str) -> Result<Config, ConfigError> {
    let text = format!(
        r#"{{"databases": [
  {entry},
  {{"id": 1, "dbname": "app", "host": "b.test", "user": "app"}}],
 "syncs": [{{"sources": [0, 1], "tables": "all"}}]}}"#
    );
    Config::from_str(&text, Path::new("/etc/dugong/bucardo.json"))
}

fn first(entry: &str) -> Database {
    load(entry).unwrap_or_else(|err| panic!("{entry}: {err}")).databases.remove(0)
}

fn pg(entry: &str) -> PgTarget {
    match first(entry).location {
        Location::Postgres(target) => target,
        Location::Sqlite(path) => panic!("expected PostgreSQL, got sqlite:{}", path.display()),
    }
}

fn hosts(target: &PgTarget) -> Vec<String> {
    target
        .config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect()
}

fn error(entry: &str) -> ConfigError {
    match load(entry) {
        Ok(_) => panic!("{entry}: loaded, expected an error"),
        Err(err) => err,
    }
}

/// The error is at `field`, its reason contains `reason`, and it is placed.
fn assert_error(entry: &str, field: &str, reason: &str) {
    let err = error(entry);
    assert_eq!(err.field.as_deref(), Some(field), "{entry}: {err}");
    assert!(err.reason.contains(reason), "{entry}: {err} lacks {reason:?}");
    assert_eq!(err.line, Some(2), "{entry}: {err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn host_keywords_and_defaults() {
    let target = pg(r#"{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "pass": "pw"}"#);
    assert_eq!(hosts(&target), ["a.test"]);
    assert_eq!(target.config.get_ports(), &[5432]);
    assert_eq!(target.sslmode, SslMode::Prefer);
    assert_eq!(target.display, "a.test:5432/app user=app");
    assert!(!target.has_default_login());

    let target = pg(r#"{"id": 0, "dbname": "app", "user": "app",
        "host": "host=x port=5 sslmode=require connect_timeout=10 application_name=dugong options=-cstatement_timeout=0"}"#);
    assert_eq!(hosts(&target), ["x"]);
    assert_eq!(target.config.get_ports(), &[5]);
    assert_eq!(target.sslmode, SslMode::Require);
    assert_eq!(target.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    assert_eq!(target.config.get_connect_timeout(), Some(&Duration::from_secs(10)));
    assert_eq!(target.config.get_application_name(), Some("dugong"));
    assert_eq!(target.config.get_options(), Some("-cstatement_timeout=0"));

    let target = pg(r#"{"id": 0, "dbname": "app", "user": "app", "host": "hostaddr=10.0.0.5"}"#);
    assert_eq!(hosts(&target), ["10.0.0.5"]);
}

#[test]
fn port_and_sslmode_fields() {
    let target =
        pg(r#"{"id": 0, "dbname": "app", "host": "a.test", "port": 5444, "user": "app", "sslmode": "disable"}"#);
    assert_eq!(target.config.get_ports(), &[5444]);
    assert_eq!(target.sslmode, SslMode::Disable);
    assert_eq!(target.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    let target = pg(r#"{"id": 0, "dbname": "app", "host": "a.test", "port": "5445", "user": "app"}"#);
    assert_eq!(target.config.get_ports(), &[5445]);
}

#[test]
fn postgres_urls() {
    let target = pg(r#"{"id": 0, "url": "postgres://app:hunter2@a.test:5444/appdb?sslmode=require"}"#);
    assert_eq!(hosts(&target), ["a.test"]);
    assert_eq!(target.config.get_ports(), &[5444]);
    assert_eq!(target.config.get_dbname(), Some("appdb"));
    assert_eq!(target.config.get_password(), Some(&b"hunter2"[..]));
    assert_eq!(target.password.as_ref().map(|p| p.expose()), Some("hunter2"));
    assert_eq!(target.sslmode, SslMode::Require);
    assert_eq!(target.display, "a.test:5444/appdb user=app");

    // postgresql:// too; a separate "pass" and "sslmode" apply to it.
    let target = pg(
        r#"{"id": 0, "url": "postgresql://app@a.test/appdb?sslmode=require", "pass": "hunter2", "sslmode": "disable"}"#,
    );
    assert_eq!(target.config.get_password(), Some(&b"hunter2"[..]));
    assert_eq!(target.sslmode, SslMode::Disable);
    assert_eq!(target.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    assert_eq!(target.display, "a.test:5432/appdb user=app");

    let target = pg(r#"{"id": 0, "url": "postgres://app@a.test:5433,b.test:5434/appdb"}"#);
    assert_eq!(target.display, "a.test:5433,b.test:5434/appdb user=app");
}

#[test]
fn sqlite_urls() {
    for (url, path) in [
        ("sqlite:site0.db", "site0.db"),
        ("sqlite:/var/lib/d.db", "/var/lib/d.db"),
        ("sqlite:///var/lib/d.db", "/var/lib/d.db"),
    ] {
        let database = first(&format!(r#"{{"id": 0, "url": "{url}"}}"#));
        match &database.location {
            Location::Sqlite(found) => assert_eq!(found, &PathBuf::from(path), "{url}"),
            Location::Postgres(_) => panic!("{url}: expected SQLite"),
        }
        assert_eq!(database.location.to_string(), format!("sqlite:{path}"));
    }
}

#[test]
fn nothing_printable_carries_the_password() {
    for entry in [
        r#"{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "pass": "hunter2"}"#,
        r#"{"id": 0, "url": "postgres://app:hunter2@a.test/app"}"#,
    ] {
        let config = load(entry).unwrap();
        let Location::Postgres(target) = &config.databases[0].location else { panic!("expected PostgreSQL") };
        assert!(!format!("{config:?}").contains("hunter2"), "{entry}");
        assert!(!config.databases[0].location.to_string().contains("hunter2"));
        assert!(!target.display.contains("hunter2"));
    }
}

#[test]
fn required_fields_and_bad_hosts() {
    assert_error(r#"{"id": 0, "host": "a.test", "user": "app"}"#, "databases[0].dbname", "missing");
    assert_error(r#"{"id": 0, "dbname": "app", "host": "a.test"}"#, "databases[0].user", "missing");
    assert_error(r#"{"id": 0, "dbname": "app", "user": "app"}"#, "databases[0].host", "missing");
    assert_error(r#"{"id": 0, "dbname": " ", "host": "a.test", "user": "app"}"#, "databases[0].dbname", "empty");
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test sslkey=/k", "user": "app"}"#,
        "databases[0].host",
        "unknown keyword `sslkey`",
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test password=hunter2", "user": "app"}"#,
        "databases[0].host",
        "use the \"pass\" field",
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test port=5444", "port": 5444, "user": "app"}"#,
        "databases[0].port",
        "given twice",
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test sslmode=require", "sslmode": "require", "user": "app"}"#,
        "databases[0].sslmode",
        "given twice",
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "port": 0}"#,
        "databases[0].port",
        "not a port",
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "allow"}"#,
        "databases[0].sslmode",
        "use disable, prefer, require, verify-ca or verify-full",
    );
}

#[test]
fn bad_urls() {
    assert_error(
        r#"{"id": 0, "url": "postgres://app@a.test/app", "host": "a.test"}"#,
        "databases[0].host",
        "cannot be combined",
    );
    assert_error(
        r#"{"id": 0, "url": "postgres://app@a.test/app", "dbname": "app"}"#,
        "databases[0].dbname",
        "cannot be combined",
    );
    assert_error(
        r#"{"id": 0, "url": "mysql://app:hunter2@a.test/app"}"#,
        "databases[0].url",
        "must start with postgres://",
    );
    assert_error(r#"{"id": 0, "url": "postgres://a.test/app"}"#, "databases[0].url", "names no user");
    assert_error(
        r#"{"id": 0, "url": "postgres://app:hunter2@a.test/app?bogus=1"}"#,
        "databases[0].url",
        "not a valid PostgreSQL URL: invalid connection string: unknown option `bogus`",
    );
    assert_error(
        r#"{"id": 0, "url": "postgres://app:pw@a.test/app", "pass": "hunter2"}"#,
        "databases[0].pass",
        "already carries a password",
    );
    assert_error(r#"{"id": 0, "url": "sqlite:"}"#, "databases[0].url", "sqlite:PATH");
    assert_error(r#"{"id": 0, "url": "sqlite:x.db", "pass": "hunter2"}"#, "databases[0].pass", "no password");
    assert_error(r#"{"id": 0, "url": "sqlite:x.db", "sslmode": "require"}"#, "databases[0].sslmode", "PostgreSQL only");
}
