//! Logging setup: tracing to stderr, text or JSON; colors only when stderr is a terminal (a log
//! file or a pipe gets plain text) and `NO_COLOR` is not set (no-color.org).
//!
//! Whatever the filter asks for, DEBUG and TRACE events are kept only from Dugong's own crates
//! and rustls: other libraries log what passes through them at those levels (tokio-postgres
//! the parameters of every statement, that is row values and password hashes; HTTP libraries
//! headers, that is tokens), and Dugong promises never to log a value, a token or a password.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Targets whose DEBUG and TRACE events are kept: they log no values.
const VERBOSE_OK: &[&str] = &["dugong", "rustls", "tokio_rustls"];

/// Whether an event may be logged at all (the filter decides the rest).
fn safe(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || VERBOSE_OK.iter().any(|t| meta.target().starts_with(t))
}

/// Added to every filter that does not name `tokio_postgres` itself. The
/// PostgreSQL driver logs each server notice at INFO ("relation … already
/// exists, skipping" on every start) and each statement's parameters, row
/// values included, at DEBUG: neither belongs in Dugong's log. Dugong's own
/// connections report notices at DEBUG under Dugong's targets.
const DRIVER: &str = "tokio_postgres=warn";

/// The filter as given, with [`DRIVER`] unless the filter names the driver.
fn directives(filter: &str) -> String {
    if filter.contains("tokio_postgres") {
        filter.to_string()
    } else if filter.trim().is_empty() {
        format!("info,{DRIVER}")
    } else {
        format!("{filter},{DRIVER}")
    }
}

pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(directives(filter)).unwrap_or_else(|_| EnvFilter::new(format!("info,{DRIVER}")));
    let ansi = colors(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"));
    let base = fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let layer = if json { base.json().boxed() } else { base.boxed() };
    tracing_subscriber::registry().with(layer.with_filter(filter).with_filter(filter_fn(safe))).init();
}

/// Whether to color the log: on a terminal, unless `NO_COLOR` is set to
/// anything but the empty string.
fn colors(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_turns_colors_off_on_a_terminal() {
        assert!(colors(true, None));
        assert!(!colors(true, Some("1".into())));
        assert!(colors(true, Some("".into())), "an empty NO_COLOR counts as unset");
        assert!(!colors(false, None));
    }

    #[test]
    fn the_driver_is_quiet_unless_named() {
        assert_eq!(directives("info"), "info,tokio_postgres=warn");
        assert_eq!(directives("dugong_replica=debug"), "dugong_replica=debug,tokio_postgres=warn");
        assert_eq!(directives("debug,tokio_postgres=debug"), "debug,tokio_postgres=debug");
        assert_eq!(directives(""), "info,tokio_postgres=warn");
    }

    #[test]
    fn verbose_events_only_from_our_own_crates() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |target: &'static str, level: Level| {
            Metadata::new("e", target, level, None, None, None, FieldSet::new(&[], Identifier(&SITE)), Kind::EVENT)
        };
        assert!(safe(&meta("dugong_store::postgres", Level::TRACE)));
        assert!(safe(&meta("tokio_postgres::query", Level::INFO)));
        assert!(!safe(&meta("tokio_postgres::query", Level::DEBUG)));
        assert!(!safe(&meta("h2::codec", Level::TRACE)));
        assert!(!safe(&meta("hyper::proto", Level::DEBUG)));
    }
}
