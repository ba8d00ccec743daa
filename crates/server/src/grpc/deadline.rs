//! How long a call may take: the client's `grpc-timeout` when it is shorter
//! than the server's request timeout, else the server's.

use std::time::Duration;

use axum::http::HeaderMap;

/// The deadline of a call with `headers`, at most `server`.
pub fn of(headers: &HeaderMap, server: Duration) -> Duration {
    headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse)
        .map_or(server, |client| client.min(server))
}

/// `grpc-timeout`: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_deadline_wins() {
        let server = Duration::from_secs(30);
        let mut h = HeaderMap::new();
        assert_eq!(of(&h, server), server);
        h.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(of(&h, server), Duration::from_millis(250));
        h.insert("grpc-timeout", "2H".parse().unwrap());
        assert_eq!(of(&h, server), server);
        for bad in ["", "m", "123456789S", "5x", "-1S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
