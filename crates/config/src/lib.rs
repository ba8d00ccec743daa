//! Dugong's configuration: the Bucardo-style JSON that deployments already
//! write, read into typed structs and validated, so that bad configuration
//! fails at start with the file, the field, the line and the reason.
//!
//! ```json
//! {"databases": [{"id": 0, "dbname": "kwanza", "host": "0.ha.test port=5444", "user": "postgres", "pass": "env"}, …],
//!  "syncs": [{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}]}
//! ```
//!
//! Modules, in the order a file is read:
//!
//! - `span`: parses the JSON and remembers where each value starts, so that
//!   errors found after parsing still point at a line.
//! - `raw`: the file's shape as serde reads it, including Bucardo's own options
//!   (accepted, ignored, listed in [`Config::ignored`]).
//! - [`database`](Database): each database, from Bucardo's fields (`host` may
//!   carry libpq keywords, `host.rs` reads them) or a Dugong `url`, with its
//!   [`SslMode`] (`sslmode.rs`).
//! - [`sync`](Sync): each sync, its `tables` (`tables.rs`), its
//!   `conflict_strategy` (`strategy.rs`), its `conflict_retention`, its
//!   `backlog_alert` and its
//!   [`OneTimeCopy`] (`onetimecopy.rs`, which `raw` reads too).
//! - `validate`: the rules that tie fields together ([`Config::validate`]).
//! - [`ConfigError`] reports a broken rule; [`Secret`] keeps passwords out of
//!   `Debug` and `Display`.

#![warn(missing_docs)]

mod connstr;
mod database;
mod error;
mod host;
mod onetimecopy;
pub mod pgtls;
mod raw;
mod secret;
mod span;
mod sslmode;
mod strategy;
mod sync;
mod tables;
mod validate;

use std::path::{Path, PathBuf};

use dugong_core::DbId;

pub use database::{Database, Location, PgTarget};
pub use error::ConfigError;
pub use onetimecopy::OneTimeCopy;
pub use secret::Secret;
pub use sslmode::SslMode;
pub use sync::{size, Sync, DEFAULT_BACKLOG_ALERT, DEFAULT_CONFLICT_RETENTION};
pub use tables::{TableRef, TableSelection};

use database::Env;
use error::Invalid;
use raw::RawConfig;
use span::Spans;

/// What the top level of the file must be.
const ONE_OBJECT: &str = "the file must be one JSON object, {\"databases\": […], \"syncs\": […]}";

/// A whole configuration file, read and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (named in every error).
    pub path: PathBuf,
    /// The databases, in file order.
    pub databases: Vec<Database>,
    /// The syncs, in file order (`index` is the position here).
    pub syncs: Vec<Sync>,
    /// Bucardo options that were written and are ignored, by field path
    /// (`syncs[0].autokick`): log them once at start.
    pub ignored: Vec<String>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|err| ConfigError::file(path, format!("cannot be read: {err}")))?;
        Config::from_str(&text, path)
    }

    /// Reads and validates `text`, the contents of the file at `path`.
    /// `pass: "env"` reads `BUCARDO_DB<id>` from the process environment.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse(text, path, &|name| std::env::var(name))
    }

    /// The database with this id.
    pub fn database(&self, id: DbId) -> Option<&Database> {
        self.databases.iter().find(|database| database.id == id)
    }

    /// The sync with this name.
    pub fn sync(&self, name: &str) -> Option<&Sync> {
        self.syncs.iter().find(|sync| sync.name.as_str() == name)
    }

    /// Every database id used by a sync: all syncs' sources first, then their
    /// targets, each once.
    pub fn databases_in_syncs(&self) -> Vec<DbId> {
        let mut ids = Vec::new();
        let sources = self.syncs.iter().flat_map(|sync| &sync.sources);
        let targets = self.syncs.iter().flat_map(|sync| &sync.targets);
        for id in sources.chain(targets) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids
    }

    /// [`Config::from_str`] with the environment given, so tests need not
    /// change the process's.
    pub(crate) fn parse(text: &str, path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let first = text.char_indices().find(|(_, c)| !c.is_whitespace());
        if let Some((at, c)) = first.filter(|(_, c)| *c != '{') {
            let (line, column) = span::position(text, at);
            return Err(ConfigError {
                line: Some(line),
                column: Some(column),
                ..ConfigError::file(path, format!("{ONE_OBJECT}, but starts with `{c}`"))
            });
        }
        if first.is_none() {
            return Err(ConfigError::file(path, format!("the file is empty; {ONE_OBJECT}")));
        }
        let raw: RawConfig = span::parse(text).map_err(|err| ConfigError::json(path, err.field, &err.error))?;
        let mut spans = Spans::default();
        let config = build(path, raw, env, &mut spans)
            .and_then(|config| config.check().map(|()| config))
            .map_err(|invalid| ConfigError::located(path, text, &spans, invalid))?;
        Ok(config)
    }
}

/// Turns the raw shape into the typed config, field by field, noting where
/// each field is in `spans`.
fn build(path: &Path, raw: RawConfig, env: Env<'_>, spans: &mut Spans) -> Result<Config, Invalid> {
    spans.note("databases", &raw.databases);
    spans.note("syncs", &raw.syncs);
    let mut ignored = Vec::new();
    let mut databases = Vec::new();
    for (i, database) in raw.databases.value.into_iter().enumerate() {
        let prefix = format!("databases[{i}]");
        ignored.extend(database.value.ignored().into_iter().map(|name| format!("{prefix}.{name}")));
        databases.push(database::from_raw(&prefix, database, env, spans)?);
    }
    let mut syncs = Vec::new();
    for (i, sync) in raw.syncs.value.into_iter().enumerate() {
        let prefix = format!("syncs[{i}]");
        ignored.extend(sync.value.ignored().into_iter().map(|name| format!("{prefix}.{name}")));
        syncs.push(sync::from_raw(&prefix, i, sync, spans)?);
    }
    Ok(Config { path: path.to_owned(), databases, syncs, ignored })
}

#[cfg(test)]
mod tests {
    use std::env::VarError;
    use std::ffi::OsString;

    use super::*;

    const TEXT: &str = r#"{"databases": [
  {"id": 3, "dbname": "app", "host": "a.test", "user": "app", "pass": "env"},
  {"id": 4, "dbname": "app", "host": "b.test", "user": "app"}],
 "syncs": [{"sources": [3, 4], "tables": "all"}]}"#;

    #[test]
    fn env_passwords_come_from_the_environment_given() {
        let env = |name: &str| {
            if name == "BUCARDO_DB3" {
                Ok("pw3".to_owned())
            } else {
                Err(VarError::NotPresent)
            }
        };
        let config = Config::parse(TEXT, Path::new("c.json"), &env).unwrap();
        let Location::Postgres(target) = &config.databases[0].location else { panic!("expected PostgreSQL") };
        assert_eq!(target.config.get_password(), Some(&b"pw3"[..]));
    }

    #[test]
    fn an_env_password_that_is_not_utf8_is_refused() {
        let env = |_: &str| Err(VarError::NotUnicode(OsString::from("x")));
        let err = Config::parse(TEXT, Path::new("c.json"), &env).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("databases[0].pass"));
        assert!(err.reason.contains("BUCARDO_DB3 is not valid UTF-8"), "{err}");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let text = format!("\u{feff}{TEXT}");
        let env = |_: &str| Ok("pw".to_owned());
        assert!(Config::parse(&text, Path::new("c.json"), &env).is_ok());
        let err = Config::parse("\u{feff}\n  [1]", Path::new("c.json"), &env).unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(3)));
        assert!(err.reason.ends_with("but starts with `[`"), "{err}");
    }
}
