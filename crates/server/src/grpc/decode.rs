//! A request whose message cannot be decoded is the client's mistake:
//! INVALID_ARGUMENT, not the INTERNAL that tonic's codec answers (which reads
//! as the server's fault and invites a retry).

use axum::http::{HeaderValue, Response};

/// What prost's decode errors start with, as tonic puts them in
/// `grpc-message`.
const DECODE_FAILED: &str = "failed to decode Protobuf message";

/// `response` with a decode failure's INTERNAL made INVALID_ARGUMENT.
pub fn invalid_argument<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let internal = headers.get("grpc-status").is_some_and(|s| s == "13");
    let decode = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| percent_decoded(m).starts_with(DECODE_FAILED));
    if internal && decode {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("the request is not a valid protobuf message for this call"),
        );
    }
    response
}

/// `grpc-message` is percent-encoded; decoding its start is enough here.
fn percent_decoded(text: &str) -> String {
    text.replace("%20", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decode_failures_change() {
        let with = |status: &'static str, message: &'static str| {
            let mut r = Response::new(());
            r.headers_mut().insert("grpc-status", HeaderValue::from_static(status));
            r.headers_mut().insert("grpc-message", HeaderValue::from_static(message));
            invalid_argument(r).headers()["grpc-status"].clone()
        };
        assert_eq!(with("13", "failed to decode Protobuf message: invalid wire type"), "3");
        assert_eq!(with("13", "failed%20to%20decode%20Protobuf%20message: x"), "3");
        assert_eq!(with("13", "internal error (logged on the server)"), "13");
        assert_eq!(with("5", "failed to decode Protobuf message"), "5");
    }
}
