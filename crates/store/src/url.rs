//! `--db`: which database a server keeps its data in.

use std::path::PathBuf;
use std::str::FromStr;

use dugong_config::{PgTarget, SslMode};

use crate::error::StoreError;

/// A database location: `postgres://…` (or `postgresql://…`, or libpq's
/// `key=value` form) or `sqlite:PATH`. PostgreSQL takes every libpq
/// `sslmode`, verify-ca and verify-full included, and `sslrootcert`.
#[derive(Debug, Clone)]
pub enum DbUrl {
    Postgres {
        config: Box<tokio_postgres::Config>,
        /// `host:port/dbname` for messages: never the password.
        display: String,
        /// Whether and how the connection uses TLS.
        sslmode: SslMode,
        /// The CA to trust (a PEM file, checked readable when parsed).
        sslrootcert: Option<PathBuf>,
    },
    Sqlite {
        path: PathBuf,
    },
}

impl DbUrl {
    /// The embedded default for a site without `--db`: `dugong-<site>.sqlite`
    /// in the working directory.
    pub fn default_sqlite(site: &str) -> DbUrl {
        DbUrl::Sqlite { path: PathBuf::from(format!("dugong-{site}.sqlite")) }
    }

    /// The location for messages and logs, without any password.
    pub fn display(&self) -> String {
        match self {
            DbUrl::Postgres { display, .. } => format!("postgres://{display}"),
            DbUrl::Sqlite { path } => format!("sqlite:{}", path.display()),
        }
    }

    /// `postgres` or `sqlite`.
    pub fn engine(&self) -> &'static str {
        match self {
            DbUrl::Postgres { .. } => "postgres",
            DbUrl::Sqlite { .. } => "sqlite",
        }
    }
}

impl FromStr for DbUrl {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<DbUrl, StoreError> {
        if let Some(rest) = text.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::Url("sqlite: needs a file path, as in sqlite:data/dugong.sqlite".into()));
            }
            return Ok(DbUrl::Sqlite { path: PathBuf::from(path) });
        }
        let is_url = text.starts_with("postgres://") || text.starts_with("postgresql://");
        if !is_url && !text.contains('=') {
            return Err(StoreError::Url(
                "expected postgres://USER@HOST:PORT/DBNAME or sqlite:PATH (the value is not shown: it may hold a password)"
                    .into(),
            ));
        }
        // The parser's messages never repeat the text, which may hold a password.
        let target = PgTarget::parse(text).map_err(StoreError::Url)?;
        let display = describe(&target.config);
        Ok(DbUrl::Postgres {
            config: Box::new(target.config),
            display,
            sslmode: target.sslmode,
            sslrootcert: target.sslrootcert,
        })
    }
}

/// `host:port/dbname` (first host only).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_engines_and_hides_passwords() {
        let url: DbUrl = "postgres://app:s3cret@db.example:5444/kwanza".parse().unwrap();
        assert_eq!(url.display(), "postgres://db.example:5444/kwanza");
        let url: DbUrl = "sqlite:data/x.sqlite".parse().unwrap();
        assert_eq!(url.display(), "sqlite:data/x.sqlite");
        let url: DbUrl = "sqlite:///tmp/x.sqlite".parse().unwrap();
        assert_eq!(url.display(), "sqlite:/tmp/x.sqlite");
        let err = "mysql://root:pw@h/db".parse::<DbUrl>().unwrap_err().to_string();
        assert!(!err.contains("pw"), "{err}");
        let url: DbUrl = "postgres://h/db?sslmode=verify-full".parse().unwrap();
        assert!(matches!(url, DbUrl::Postgres { sslmode: SslMode::VerifyFull, .. }));
    }
}
