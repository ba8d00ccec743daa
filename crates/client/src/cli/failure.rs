//! Why `dugong client` failed, as an exit code a script can branch on and as one line (or one
//! JSON object) on stderr naming every server tried and its cause.

use serde_json::{json, Value};
use tonic::Code;

use crate::{CallError, ConfigError};

/// The exit codes, as `dugong client --help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other failure (e.g. some of the sessions of `sessions` failed, stdout closed)
  2  configuration or usage error: bad flag, URL, --ca file, JSON value; a token refused for cleartext
  3  name resolution: none of the server names resolves
  4  all servers unavailable: none could take the call (refused, down, draining, TLS certificate
     not accepted, deadline passed); a call that is not idempotent did not run (an idempotent one
     may have, on a server that failed: repeating it is harmless)
  5  authentication: the server refused the token (UNAUTHENTICATED, PERMISSION_DENIED)
  6  refused by the server: it answered with an error (NOT_FOUND, a version conflict, INVALID_ARGUMENT…)
  7  outcome unknown: a call that is not idempotent was sent and its server failed before answering;
     it may or may not have run
Errors go to stderr on one line; with --json as one JSON object:
  {\"error\": {\"kind\", \"exit_code\", \"message\", \"servers\": [{\"server\", \"names\", \"cause\"}]}}";

/// A value given on the command line that is not what the command takes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The classes of failure, each with its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 1: anything else.
    Other,
    /// 2: the configuration or the command line.
    Config,
    /// 3: no server name resolves.
    Resolution,
    /// 4: no server could take the call.
    Unavailable,
    /// 5: the server refused the credentials.
    Authentication,
    /// 6: the server answered with an error.
    Refused,
    /// 7: a call that is not idempotent may or may not have run.
    OutcomeUnknown,
}

impl Failure {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Failure::Other => 1,
            Failure::Config => 2,
            Failure::Resolution => 3,
            Failure::Unavailable => 4,
            Failure::Authentication => 5,
            Failure::Refused => 6,
            Failure::OutcomeUnknown => 7,
        }
    }

    /// The name in `--json` errors.
    pub fn kind(self) -> &'static str {
        match self {
            Failure::Other => "other",
            Failure::Config => "configuration",
            Failure::Resolution => "name_resolution",
            Failure::Unavailable => "unavailable",
            Failure::Authentication => "authentication",
            Failure::Refused => "refused",
            Failure::OutcomeUnknown => "outcome_unknown",
        }
    }

    /// The class of `err`, from the first cause in its chain that says.
    pub fn of(err: &anyhow::Error) -> Failure {
        for cause in err.chain() {
            if let Some(call) = cause.downcast_ref::<CallError>() {
                return match call {
                    CallError::Status { status, .. } => match status.code() {
                        Code::Unauthenticated | Code::PermissionDenied => Failure::Authentication,
                        _ => Failure::Refused,
                    },
                    CallError::OutcomeUnknown { .. } => Failure::OutcomeUnknown,
                    CallError::AllServersDown { .. }
                    | CallError::DeadlineExceeded { .. }
                    | CallError::RetryBudgetExhausted { .. } => Failure::Unavailable,
                };
            }
            if let Some(config) = cause.downcast_ref::<ConfigError>() {
                return match config {
                    ConfigError::NothingResolves(_) | ConfigError::SystemResolver(_) => Failure::Resolution,
                    _ => Failure::Config,
                };
            }
            if cause.is::<BadInput>() || cause.is::<serde_json::Error>() || cause.is::<clap::Error>() {
                return Failure::Config;
            }
        }
        Failure::Other
    }
}

/// `err` on one line.
pub fn line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace(['\n', '\r'], " ")
}

/// `err` as the `--json` error object.
pub fn json(err: &anyhow::Error) -> Value {
    let failure = Failure::of(err);
    let servers: Vec<Value> = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<CallError>())
        .and_then(CallError::servers)
        .map(|report| {
            report
                .0
                .iter()
                .map(|s| json!({ "server": s.addr.to_string(), "names": s.names, "cause": s.cause }))
                .collect()
        })
        .unwrap_or_default();
    let mut error = json!({ "kind": failure.kind(), "exit_code": failure.code(), "message": line(err) });
    if let Some(CallError::OutcomeUnknown { server, .. }) = err.chain().find_map(|c| c.downcast_ref::<CallError>()) {
        error["server"] = json!(server.to_string());
    }
    if !servers.is_empty() {
        error["servers"] = Value::Array(servers);
    }
    json!({ "error": error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServerReport, ServersReport};
    use std::time::Duration;
    use tonic::Status;

    fn of(err: impl Into<anyhow::Error>) -> Failure {
        Failure::of(&err.into())
    }

    #[test]
    fn every_failure_class_has_its_own_code() {
        let server = "127.0.0.1:1".parse().unwrap();
        let status = |s: Status| CallError::Status { server, status: s };
        assert_eq!(of(status(Status::unauthenticated("no token"))).code(), 5);
        assert_eq!(of(status(Status::permission_denied("read-only token"))).code(), 5);
        assert_eq!(of(status(Status::not_found("no such app"))).code(), 6);
        assert_eq!(of(CallError::OutcomeUnknown { server, cause: "reset".into() }).code(), 7);
        let report = ServersReport(vec![ServerReport { addr: server, names: vec![], cause: "refused".into() }]);
        assert_eq!(of(CallError::AllServersDown { report: report.clone(), elapsed: Duration::ZERO }).code(), 4);
        assert_eq!(of(CallError::RetryBudgetExhausted { report }).code(), 4);
        assert_eq!(of(ConfigError::NothingResolves(vec![])).code(), 3);
        assert_eq!(of(ConfigError::NoServers).code(), 2);
        assert_eq!(of(BadInput("--app lists only flows".into())).code(), 2);
        assert_eq!(of(anyhow::anyhow!("stdout closed")).code(), 1);
        // Context on top does not hide the class.
        let wrapped = anyhow::Error::new(status(Status::aborted("moved"))).context("put k");
        assert_eq!(Failure::of(&wrapped), Failure::Refused);
        assert_eq!(line(&wrapped), "put k: server 127.0.0.1:1 answered: Aborted: moved");
    }

    #[test]
    fn json_errors_carry_the_kind_the_code_and_every_server() {
        let report = ServersReport(vec![ServerReport {
            addr: "127.0.0.1:1".parse().unwrap(),
            names: vec!["0.ha.test".into()],
            cause: "connection refused".into(),
        }]);
        let err = anyhow::Error::new(CallError::AllServersDown { report, elapsed: Duration::from_millis(3) });
        let value = json(&err);
        assert_eq!(value["error"]["kind"], "unavailable");
        assert_eq!(value["error"]["exit_code"], 4);
        assert_eq!(
            value["error"]["servers"],
            json!([{"server": "127.0.0.1:1", "names": ["0.ha.test"], "cause": "connection refused"}])
        );
    }
}
