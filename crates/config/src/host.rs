//! The `host` field: a host name, optionally followed by libpq `keyword=value`
//! words (`"0.ha.test port=5444"`), or only keywords (`"host=x port=5"`).
//! Bucardo's container word-splits this string into `bucardo add db`
//! arguments; Dugong reads the same words, from a small explicit set.

use crate::raw::Port;
use crate::sslmode::SslMode;

/// The keywords `host` may carry.
const KEYWORDS: &[&str] =
    &["host", "hostaddr", "port", "sslmode", "sslrootcert", "connect_timeout", "application_name", "options"];

/// What the `host` field says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HostWords {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) sslmode: Option<SslMode>,
    /// The CA file, as written.
    pub(crate) sslrootcert: Option<String>,
    /// Seconds; 0 means no limit, as in libpq.
    pub(crate) connect_timeout: Option<u64>,
    pub(crate) application_name: Option<String>,
    pub(crate) options: Option<String>,
}

impl HostWords {
    /// Parses the field. The error is the reason, for the field `host`; it
    /// never repeats a value, which could be a misplaced password.
    pub(crate) fn parse(text: &str) -> Result<HostWords, String> {
        let mut words = HostWords::default();
        let mut host: Option<String> = None;
        for (i, word) in text.split_whitespace().enumerate() {
            let Some((key, value)) = word.split_once('=') else {
                if i == 0 {
                    host = Some(word.to_owned());
                    continue;
                }
                return Err(format!(
                    "word {} is neither the host name (the first word) nor a keyword=value pair",
                    i + 1
                ));
            };
            if !KEYWORDS.contains(&key) {
                return Err(unknown_keyword(key));
            }
            if value.is_empty() {
                return Err(format!("`{key}=` has no value"));
            }
            let repeated = match key {
                "host" | "hostaddr" => host.replace(value.to_owned()).is_some(),
                "port" => words.port.replace(Port::parse(value)?).is_some(),
                "sslmode" => words.sslmode.replace(value.parse()?).is_some(),
                "sslrootcert" => words.sslrootcert.replace(value.to_owned()).is_some(),
                "connect_timeout" => {
                    let seconds = value
                        .parse()
                        .map_err(|_| format!("connect_timeout=`{value}` is not a whole number of seconds"))?;
                    words.connect_timeout.replace(seconds).is_some()
                }
                "application_name" => words.application_name.replace(value.to_owned()).is_some(),
                _ => words.options.replace(value.to_owned()).is_some(),
            };
            if repeated {
                return Err(match key {
                    "host" | "hostaddr" => "the host is given twice (first word, host= or hostaddr=)".to_owned(),
                    _ => format!("`{key}` is given twice"),
                });
            }
        }
        words.host = host.ok_or("no host name; write it first, e.g. \"db.example port=5432\"")?;
        Ok(words)
    }
}

fn unknown_keyword(key: &str) -> String {
    let hint = match key {
        "dbname" => " (use the \"dbname\" field)",
        "user" => " (use the \"user\" field)",
        "password" => " (use the \"pass\" field)",
        _ => "",
    };
    format!("unknown keyword `{key}`{hint}; \"host\" may carry only {}", KEYWORDS.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_then_keywords_as_deployments_write_it() {
        let words = HostWords::parse("0.ha.test port=5444").unwrap();
        assert_eq!(words, HostWords { host: "0.ha.test".into(), port: Some(5444), ..HostWords::default() });
    }

    #[test]
    fn keywords_only() {
        let words =
            HostWords::parse("host=x port=5 sslmode=require sslrootcert=/ca.pem connect_timeout=10 application_name=dugong options=-cx=1")
                .unwrap();
        assert_eq!(
            words,
            HostWords {
                host: "x".into(),
                port: Some(5),
                sslmode: Some(SslMode::Require),
                sslrootcert: Some("/ca.pem".into()),
                connect_timeout: Some(10),
                application_name: Some("dugong".into()),
                options: Some("-cx=1".into()),
            }
        );
        assert_eq!(HostWords::parse("hostaddr=10.0.0.5").unwrap().host, "10.0.0.5");
    }

    #[test]
    fn bad_words_are_refused_without_echoing_values() {
        let cases = [
            ("", "no host name"),
            ("port=5444", "no host name"),
            ("db password=hunter2", "unknown keyword `password` (use the \"pass\" field)"),
            ("db sslcert=/x", "unknown keyword `sslcert`"),
            ("db port=", "`port=` has no value"),
            ("db port=99999", "not a port"),
            ("db port=5 port=6", "`port` is given twice"),
            ("db host=other", "the host is given twice"),
            ("db sslmode=allow", "not supported"),
            ("db sslrootcert=/a sslrootcert=/b", "`sslrootcert` is given twice"),
            ("db connect_timeout=soon", "whole number of seconds"),
            ("db hunter2", "word 2 is neither"),
        ];
        for (text, reason) in cases {
            let err = HostWords::parse(text).expect_err(text);
            assert!(err.contains(reason), "{text:?}: {err:?} lacks {reason:?}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
