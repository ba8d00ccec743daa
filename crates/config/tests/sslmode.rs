//! `sslmode` in all five libpq modes and `sslrootcert`, written as fields, as
//! `host` keywords and in a `url`; and the errors a wrong CA file gives.

use std::path::{Path, PathBuf};

use dugong_config::{Config, ConfigError, Location, PgTarget, SslMode};
use tokio_postgres::config::SslMode as PgSslMode;

/// A config whose database 0 is `entry`, plus a plain database 1 and a sync.
fn load(entry: &str) -> Result<Config, ConfigError> {
    let text = format!(
        r#"{{"databases": [
  {entry},
  {{"id": 1, "dbname": "app", "host": "b.test", "user": "app"}}],
 "syncs": [{{"sources": [0, 1], "tables": "all"}}]}}"#
    );
    Config::from_str(&text, Path::new("/etc/dugong/bucardo.json"))
}

fn pg(entry: &str) -> PgTarget {
    let mut config = load(entry).unwrap_or_else(|err| panic!("{entry}: {err}"));
    match config.databases.remove(0).location {
        Location::Postgres(target) => target,
        Location::Sqlite(path) => panic!("expected PostgreSQL, got sqlite:{}", path.display()),
    }
}

/// The error is at `field`, on line 2 (database 0), and its reason contains `reason`.
fn assert_error(entry: &str, field: &str, reason: &str) -> ConfigError {
    let err = load(entry).err().unwrap_or_else(|| panic!("{entry}: loaded, expected an error"));
    assert_eq!(err.field.as_deref(), Some(field), "{entry}: {err}");
    assert!(err.reason.contains(reason), "{entry}: {err} lacks {reason:?}");
    assert_eq!(err.line, Some(2), "{entry}: {err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    err
}

/// A directory of this test process, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("dugong-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` in the directory; its path as a JSON-safe string.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().expect("a UTF-8 temp path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Config loading only checks that the file is readable and holds a PEM
/// certificate block; parsing it is the connection's job.
const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn every_mode_as_field_host_keyword_and_url() {
    let modes = [
        ("disable", SslMode::Disable, PgSslMode::Disable),
        ("prefer", SslMode::Prefer, PgSslMode::Prefer),
        ("require", SslMode::Require, PgSslMode::Require),
        ("verify-ca", SslMode::VerifyCa, PgSslMode::Require),
        ("verify-full", SslMode::VerifyFull, PgSslMode::Require),
    ];
    for (name, mode, to_postgres) in modes {
        let entries = [
            format!(r#"{{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "{name}"}}"#),
            format!(r#"{{"id": 0, "dbname": "app", "host": "a.test sslmode={name}", "user": "app"}}"#),
            format!(r#"{{"id": 0, "url": "postgres://app:hunter2@a.test/app?sslmode={name}&connect_timeout=3"}}"#),
        ];
        for entry in entries {
            let target = pg(&entry);
            assert_eq!(target.sslmode, mode, "{entry}");
            assert_eq!(
                target.config.get_ssl_mode(),
                to_postgres,
                "{entry}: the verify modes are require to tokio-postgres"
            );
            assert_eq!(target.sslrootcert, None);
            assert_eq!(mode.as_str(), name);
        }
    }
    // The url keeps its other options.
    let target = pg(r#"{"id": 0, "url": "postgres://app@a.test/app?sslmode=verify-full&connect_timeout=3"}"#);
    assert_eq!(target.config.get_connect_timeout(), Some(&std::time::Duration::from_secs(3)));
    // Without any, prefer, as libpq.
    assert_eq!(pg(r#"{"id": 0, "url": "postgres://app@a.test/app"}"#).sslmode, SslMode::Prefer);
}

#[test]
fn the_sslmode_field_wins_over_the_url() {
    let target = pg(r#"{"id": 0, "url": "postgres://app@a.test/app?sslmode=disable", "sslmode": "verify-ca"}"#);
    assert_eq!(target.sslmode, SslMode::VerifyCa);
    assert_eq!(target.config.get_ssl_mode(), PgSslMode::Require);
}

#[test]
fn sslrootcert_as_field_host_keyword_and_url() {
    let dir = TempDir::new("rootcert");
    let ca = dir.file("ca.pem", PEM);
    let other = dir.file("other.pem", PEM);
    let encoded = ca.replace('/', "%2F");
    let entries = [
        format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "verify-full", "sslrootcert": "{ca}"}}"#
        ),
        format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test sslmode=verify-full sslrootcert={ca}", "user": "app"}}"#
        ),
        format!(r#"{{"id": 0, "url": "postgres://app@a.test/app?sslmode=verify-full&sslrootcert={encoded}"}}"#),
        format!(
            r#"{{"id": 0, "url": "postgres://app@a.test/app?sslrootcert={other}", "sslmode": "verify-full", "sslrootcert": "{ca}"}}"#
        ),
    ];
    for entry in entries {
        let target = pg(&entry);
        assert_eq!(target.sslmode, SslMode::VerifyFull, "{entry}");
        assert_eq!(target.sslrootcert.as_deref(), Some(Path::new(&ca)), "{entry}");
    }
    // With prefer or require it is accepted too (the chain is then checked, as libpq does).
    let target = pg(&format!(r#"{{"id": 0, "dbname": "app", "host": "a.test sslrootcert={ca}", "user": "app"}}"#));
    assert_eq!((target.sslmode, target.sslrootcert.as_deref()), (SslMode::Prefer, Some(Path::new(&ca))));
}

#[test]
fn a_missing_or_wrong_ca_file_is_named_with_its_field() {
    let dir = TempDir::new("badca");
    let missing = dir.0.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let err = assert_error(
        &format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "verify-ca", "sslrootcert": "{missing}"}}"#
        ),
        "databases[0].sslrootcert",
        &format!("sslrootcert {missing} cannot be read: "),
    );
    assert!(err.to_string().contains("/etc/dugong/bucardo.json, line 2"), "{err}");
    assert_error(
        &format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test sslmode=verify-ca sslrootcert={missing}", "user": "app"}}"#
        ),
        "databases[0].host",
        &format!("sslrootcert {missing} cannot be read"),
    );
    assert_error(
        &format!(r#"{{"id": 0, "url": "postgres://app:hunter2@a.test/app?sslmode=verify-ca&sslrootcert={missing}"}}"#),
        "databases[0].url",
        &format!("sslrootcert {missing} cannot be read"),
    );
    let not_pem = dir.file("key.txt", "hello\n");
    assert_error(
        &format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "verify-ca", "sslrootcert": "{not_pem}"}}"#
        ),
        "databases[0].sslrootcert",
        &format!("sslrootcert {not_pem} holds no PEM certificate"),
    );
    let directory = dir.0.to_str().unwrap();
    assert_error(
        &format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "verify-ca", "sslrootcert": "{directory}"}}"#
        ),
        "databases[0].sslrootcert",
        "cannot be read",
    );
}

#[test]
fn sslrootcert_rules() {
    let dir = TempDir::new("rules");
    let ca = dir.file("ca.pem", PEM);
    assert_error(
        &format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test sslrootcert={ca}", "sslrootcert": "{ca}", "user": "app"}}"#
        ),
        "databases[0].sslrootcert",
        "given twice",
    );
    assert_error(
        &format!(
            r#"{{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "disable", "sslrootcert": "{ca}"}}"#
        ),
        "databases[0].sslrootcert",
        "sslmode is disable, which never uses TLS",
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "verify-ca", "sslrootcert": " "}"#,
        "databases[0].sslrootcert",
        "sslrootcert is empty",
    );
    assert_error(
        &format!(r#"{{"id": 0, "url": "sqlite:x.db", "sslrootcert": "{ca}"}}"#),
        "databases[0].sslrootcert",
        "PostgreSQL only",
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslrootcert": 5}"#,
        "databases[0].sslrootcert",
        "expected a string",
    );
}

#[test]
fn unknown_modes_list_the_known_ones() {
    let known = "use disable, prefer, require, verify-ca or verify-full";
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test", "user": "app", "sslmode": "allow"}"#,
        "databases[0].sslmode",
        known,
    );
    assert_error(
        r#"{"id": 0, "dbname": "app", "host": "a.test sslmode=verify", "user": "app"}"#,
        "databases[0].host",
        known,
    );
    assert_error(r#"{"id": 0, "url": "postgres://app:hunter2@a.test/app?sslmode=allow"}"#, "databases[0].url", known);
    assert_error(
        r#"{"id": 0, "url": "postgres://app:hunter2@a.test/app?sslmode=require&sslmode=disable"}"#,
        "databases[0].url",
        "`sslmode` is given twice",
    );
}
