//! What a failed attempt means: the server's own answer, a call that surely never reached the
//! server's application (safe to send anywhere, idempotent or not), or a call whose outcome
//! nobody knows.

use std::error::Error;

use tonic::{Code, Status};

use crate::transport::append_sources;

/// The meaning of a `Status` from one attempt.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The server answered with this status: the caller gets it, the server is healthy.
    Answer(Status),
    /// The request never reached the server's application: safe to send anywhere, even when not
    /// idempotent. The server (or the way to it) is failing.
    NotSent(String),
    /// The request may or may not have run: only idempotent calls may be sent again.
    Unknown(String),
}

/// Sorts a `Status` into a [`Verdict`].
///
/// tonic gives a status built from a transport error a `source`; a status the server sent has
/// none. Never sent, by the HTTP/2 rules and the transport's own bookkeeping:
///
/// - a connect error, including the connection this client will not re-dial;
/// - hyper's "canceled" — the request was still queued for a connection that closed (or was
///   not ready) before its headers were handed to HTTP/2;
/// - a GOAWAY from the server that covers the stream: the stream's id is above the GOAWAY's
///   last-stream-id (RFC 9113 §6.8: not processed), or the stream could not even be opened
///   because the server was already going away — what a draining server does to calls sent
///   after it began to drain;
/// - `REFUSED_STREAM` from the server (RFC 9113 §8.7: not processed).
///
/// Any other transport error (a reset, a broken pipe, a keepalive timeout) leaves the outcome
/// unknown, and so does `UNAVAILABLE` sent by the server.
pub(crate) fn classify(status: Status) -> Verdict {
    if status.source().is_none() {
        return match status.code() {
            Code::Unavailable => Verdict::Unknown(describe(&status)),
            _ => Verdict::Answer(status),
        };
    }
    if never_sent(&status) {
        Verdict::NotSent(describe(&status))
    } else {
        Verdict::Unknown(describe(&status))
    }
}

fn never_sent(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            if hyper.is_canceled() {
                return true;
            }
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_go_away() && h2.is_remote() {
                return true;
            }
            if h2.is_remote() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// A one-line description of a status and its causes, without repeating what is already said.
pub(crate) fn describe(status: &Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else if status.source().is_none() {
        format!("{:?}: {}", status.code(), status.message())
    } else {
        status.message().to_string()
    };
    append_sources(&mut text, status.source());
    text
}

/// A duration as people write it: `300ms`, `2.5s`, `3m 5s`.
pub(crate) fn human(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_millis(1) {
        "under 1ms".to_string()
    } else if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < std::time::Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_servers_own_answers_go_to_the_caller() {
        assert!(matches!(classify(Status::not_found("no such app")), Verdict::Answer(_)));
        assert!(matches!(classify(Status::unavailable("shutting down")), Verdict::Unknown(_)));
    }

    #[test]
    fn connect_errors_and_refused_streams_never_reached_the_server() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        match classify(status) {
            Verdict::NotSent(cause) => assert!(cause.contains("connection refused"), "{cause}"),
            other => panic!("{other:?}"),
        }
        let mut reset = Status::unknown("transport error");
        reset.set_source(Arc::new(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer")));
        match classify(reset) {
            Verdict::Unknown(cause) => assert_eq!(cause, "reset by peer"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reset_we_made_ourselves_is_not_a_refusal_by_the_server() {
        // h2::Error::from(Reason) is a reset initiated by this side (the user), not the server's
        // REFUSED_STREAM: nothing says the server did not process it.
        let mut status = Status::unavailable("h2 protocol error");
        status.set_source(Arc::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        assert!(matches!(classify(status), Verdict::Unknown(_)));
    }
}
