//! Logging setup: tracing to stderr, text or JSON; colors only when stderr is a terminal (a log
//! file or a pipe gets plain text).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_is_quiet_unless_named() {
        assert_eq!(directives("info"), "info,tokio_postgres=warn");
        assert_eq!(directives("dugong_replica=debug"), "dugong_replica=debug,tokio_postgres=warn");
        assert_eq!(directives("debug,tokio_postgres=debug"), "debug,tokio_postgres=debug");
        assert_eq!(directives(""), "info,tokio_postgres=warn");
    }
}
