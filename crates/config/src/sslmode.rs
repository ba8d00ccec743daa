//! `sslmode` and `sslrootcert`: whether connections to a PostgreSQL database
//! use TLS and which certificates they trust, with libpq's meanings.
//!
//! tokio-postgres itself knows only disable, prefer and require; the verify
//! modes travel to it as require, and the replicator's TLS setup checks the
//! certificate as the mode asks.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::error::Invalid;

/// The names accepted, for messages.
const MODES: &str = "disable, prefer, require, verify-ca or verify-full";

/// What marks a certificate in a PEM file.
const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// `sslmode`: whether connections to a PostgreSQL database use TLS, and what
/// they check of the server's certificate.
///
/// `prefer` and `require` check no certificate unless `sslrootcert` is given
/// (then the chain, as libpq does): they protect against passive eavesdropping
/// only, not against someone who can intercept the connection and present a
/// certificate of their own. `verify-ca` and `verify-full` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never.
    Disable,
    /// When the server offers it, else without (libpq's default).
    #[default]
    Prefer,
    /// Always; fail when the server does not offer it.
    Require,
    /// Always, and the server's certificate must chain to a trusted CA
    /// (`sslrootcert`, else the system's); its host name is not checked.
    VerifyCa,
    /// Always, the certificate must chain to a trusted CA and name the host
    /// connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq name: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: the verify modes are `require` to it.
    pub(crate) fn to_postgres(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(text: &str) -> Result<SslMode, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(format!("sslmode `{text}` is not supported; use {MODES}")),
        }
    }
}

impl<'de> Deserialize<'de> for SslMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks `sslrootcert` at load, so that a wrong path fails at start rather
/// than at the first connection. `given` is the path as written and the field
/// it was written in (`sslrootcert`, or `host`/`url` for the keyword).
///
/// The file is read again at each connection, so a renewed CA is picked up.
/// A relative path is relative to the working directory, as in libpq.
pub(crate) fn root_cert(sslmode: SslMode, given: Option<(String, String)>) -> Result<Option<PathBuf>, Invalid> {
    let Some((field, path)) = given else { return Ok(None) };
    if path.trim().is_empty() {
        return Err(Invalid::new(field, "sslrootcert is empty; write the path of a PEM file of CA certificates"));
    }
    if sslmode == SslMode::Disable {
        return Err(Invalid::new(
            field,
            format!("sslrootcert {path} is given but sslmode is disable, which never uses TLS; remove one of them"),
        ));
    }
    let text = std::fs::read(&path)
        .map_err(|err| Invalid::new(&field, format!("sslrootcert {path} cannot be read: {err}")))?;
    if !String::from_utf8_lossy(&text).contains(PEM_CERTIFICATE) {
        return Err(Invalid::new(
            field,
            format!("sslrootcert {path} holds no PEM certificate (a `{PEM_CERTIFICATE}` block)"),
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

/// `sslmode` and `sslrootcert` as `?sslmode=…&sslrootcert=…` of a URL (or
/// keywords of a connection string).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlSsl {
    pub(crate) sslmode: Option<SslMode>,
    pub(crate) sslrootcert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query, which
/// tokio-postgres would refuse (it knows neither the verify modes nor
/// `sslrootcert`), and returns the URL without them. Errors never repeat the
/// URL, which may hold a password.
pub(crate) fn take_from_url(url: &str) -> Result<(Cow<'_, str>, UrlSsl), String> {
    let Some((base, query)) = url.split_once('?') else { return Ok((Cow::Borrowed(url), UrlSsl::default())) };
    let mut ssl = UrlSsl::default();
    let mut rest = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let repeated = match key {
            "sslmode" => ssl.sslmode.replace(percent_decode(value)?.parse()?).is_some(),
            "sslrootcert" => ssl.sslrootcert.replace(percent_decode(value)?).is_some(),
            _ => {
                rest.push(pair);
                false
            }
        };
        if repeated {
            return Err(format!("`{key}` is given twice in the url"));
        }
    }
    if ssl == UrlSsl::default() {
        return Ok((Cow::Borrowed(url), ssl));
    }
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((Cow::Owned(url), ssl))
}

/// `%XX` escapes of a URL query value.
fn percent_decode(text: &str) -> Result<String, String> {
    let bad = || "a %-escape in the url's sslmode or sslrootcert is not valid".to_owned();
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        if byte != b'%' {
            bytes.push(byte);
            continue;
        }
        let hex = [input.next().ok_or_else(bad)?, input.next().ok_or_else(bad)?];
        let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
        bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libpq_mode_but_allow() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(mode.as_str().parse::<SslMode>(), Ok(mode));
        }
        assert_eq!(" Verify-Full ".parse::<SslMode>(), Ok(SslMode::VerifyFull));
        let err = "allow".parse::<SslMode>().unwrap_err();
        assert!(err.contains("use disable, prefer, require, verify-ca or verify-full"), "{err}");
    }

    #[test]
    fn the_verify_modes_are_require_to_tokio_postgres() {
        use tokio_postgres::config::SslMode as Pg;
        assert_eq!(SslMode::VerifyCa.to_postgres(), Pg::Require);
        assert_eq!(SslMode::VerifyFull.to_postgres(), Pg::Require);
        assert_eq!(SslMode::Prefer.to_postgres(), Pg::Prefer);
    }

    #[test]
    fn ssl_words_leave_the_url() {
        let (url, ssl) =
            take_from_url("postgres://a@h/db?sslmode=verify-full&x=1&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(url, "postgres://a@h/db?x=1");
        assert_eq!(ssl, UrlSsl { sslmode: Some(SslMode::VerifyFull), sslrootcert: Some("/etc/ca.pem".into()) });
        let (url, _) = take_from_url("postgres://a@h/db?sslmode=require").unwrap();
        assert_eq!(url, "postgres://a@h/db");
        let (url, ssl) = take_from_url("postgres://a:pw@h/db?connect_timeout=5").unwrap();
        assert!(matches!(url, Cow::Borrowed("postgres://a:pw@h/db?connect_timeout=5")));
        assert_eq!(ssl, UrlSsl::default());
    }

    #[test]
    fn bad_ssl_words_in_a_url() {
        let cases = [
            ("postgres://a:hunter2@h/db?sslmode=allow", "sslmode `allow` is not supported"),
            ("postgres://a:hunter2@h/db?sslmode=require&sslmode=disable", "`sslmode` is given twice"),
            ("postgres://a:hunter2@h/db?sslrootcert=%zz", "%-escape"),
        ];
        for (url, reason) in cases {
            let err = take_from_url(url).unwrap_err();
            assert!(err.contains(reason), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
