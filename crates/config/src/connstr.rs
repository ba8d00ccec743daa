//! A PostgreSQL database given as one connection string, the way a server's
//! `--db` takes it: a `postgres://` URL or libpq `keyword=value` words, with
//! every `sslmode` (including the verify modes tokio-postgres does not know)
//! and `sslrootcert`. Errors never repeat the string, which may hold a
//! password.

use std::str::FromStr;

use crate::database::PgTarget;
use crate::secret::Secret;
use crate::sslmode::{self, SslMode, UrlSsl};

impl PgTarget {
    /// Reads a connection string. `sslrootcert`, when given, must be a
    /// readable PEM file of certificates; `sslmode` defaults to `prefer`.
    pub fn parse(text: &str) -> Result<PgTarget, String> {
        let text = text.trim();
        let is_url = text.starts_with("postgres://") || text.starts_with("postgresql://");
        let (rest, ssl) = if is_url {
            let (rest, ssl) = sslmode::take_from_url(text)?;
            (rest.into_owned(), ssl)
        } else if text.contains('=') {
            take_from_keywords(text)?
        } else {
            return Err("expected postgres://USER@HOST:PORT/DBNAME or libpq keyword=value words".to_owned());
        };
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|err| {
            // The cause names the option or character at fault, never a value.
            let cause = std::error::Error::source(&err).map(|cause| format!(": {cause}")).unwrap_or_default();
            format!("not a valid PostgreSQL connection string: {err}{cause}")
        })?;
        let sslmode = ssl.sslmode.unwrap_or_default();
        let rootcert = ssl.sslrootcert.map(|path| ("sslrootcert".to_owned(), path));
        let sslrootcert = sslmode::root_cert(sslmode, rootcert).map_err(|invalid| invalid.reason)?;
        config.ssl_mode(sslmode.to_postgres());
        let password = config.get_password().map(|bytes| Secret::new(String::from_utf8_lossy(bytes)));
        Ok(PgTarget::new(config, sslmode, sslrootcert, password))
    }
}

/// Takes `sslmode` and `sslrootcert` out of libpq keyword words (values may be
/// single-quoted, as libpq allows), returning the other words as written.
fn take_from_keywords(text: &str) -> Result<(String, UrlSsl), String> {
    let mut ssl = UrlSsl::default();
    let mut rest = Vec::new();
    for word in words(text)? {
        let (key, value) = word.split_once('=').map(|(k, v)| (k.trim(), v)).unwrap_or((word.as_str(), ""));
        let repeated = match key {
            "sslmode" => ssl.sslmode.replace(SslMode::from_str(&unquote(value))?).is_some(),
            "sslrootcert" => ssl.sslrootcert.replace(unquote(value)).is_some(),
            _ => {
                rest.push(word.clone());
                false
            }
        };
        if repeated {
            return Err(format!("`{key}` is given twice"));
        }
    }
    Ok((rest.join(" "), ssl))
}

/// The `keyword=value` words of `text`; a single-quoted value may hold spaces
/// and `\'`.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                word.push(c);
                word.extend(chars.next());
            }
            '\'' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return Err("a quoted value is not closed".to_owned());
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

/// A value without its quotes and escapes.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else { return value.to_owned() };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keywords_with_every_sslmode() {
        let t = PgTarget::parse("postgres://app:s3cret@db.example:5444/kwanza?sslmode=verify-full").unwrap();
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        assert_eq!(t.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(t.config.get_dbname(), Some("kwanza"));
        assert!(t.password.is_some());
        let t = PgTarget::parse("host=db.example port=5444 dbname=kwanza user=app sslmode=verify-ca").unwrap();
        assert_eq!(t.sslmode, SslMode::VerifyCa);
        assert_eq!(t.config.get_ports(), &[5444]);
        let t = PgTarget::parse("postgres://app@h/db").unwrap();
        assert_eq!(t.sslmode, SslMode::Prefer);
        let t = PgTarget::parse("host=h user=app options='-c x=1' sslmode='disable'").unwrap();
        assert_eq!((t.sslmode, t.config.get_options()), (SslMode::Disable, Some("-c x=1")));
    }

    #[test]
    fn bad_strings_are_named_without_their_password() {
        let dir = std::env::temp_dir().join(format!("dugong-connstr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let cases = [
            ("mysql://root:hunter2@h/db".to_owned(), "expected postgres://"),
            ("postgres://a:hunter2@h/db?sslmode=allow".to_owned(), "sslmode `allow` is not supported"),
            ("host=h password=hunter2 sslmode=require sslmode=disable".to_owned(), "`sslmode` is given twice"),
            ("host=h password='hunter2".to_owned(), "not closed"),
            (
                format!("postgres://a:hunter2@h/db?sslmode=verify-full&sslrootcert={}", missing.display()),
                "cannot be read",
            ),
            ("host=h password=hunter2 sslmode=disable sslrootcert=/x.pem".to_owned(), "sslmode is disable"),
            ("postgres://a:hunter2@h/db?nonsense=1".to_owned(), "not a valid PostgreSQL connection string"),
        ];
        for (text, reason) in cases {
            let err = PgTarget::parse(&text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
