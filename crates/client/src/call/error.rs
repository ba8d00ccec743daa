//! What a call can end in, besides its answer.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::Status;

/// One server and why it did not take the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReport {
    /// The resolved address.
    pub addr: SocketAddr,
    /// The configured names on it.
    pub names: Vec<String>,
    /// Why it did not take the call.
    pub cause: String,
}

/// Every server with its cause, on one line: ` ADDR (NAMES): CAUSE; ADDR: CAUSE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServersReport(pub Vec<ServerReport>);

impl fmt::Display for ServersReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, server) in self.0.iter().enumerate() {
            let mut names = server.names.clone();
            names.dedup();
            write!(f, "{} {}", if i == 0 { "" } else { ";" }, server.addr)?;
            if !names.is_empty() && names.iter().any(|n| *n != server.addr.ip().to_string()) {
                write!(f, " ({})", names.join(", "))?;
            }
            // One line, whatever a cause carries.
            write!(f, ": {}", server.cause.replace(['\n', '\r'], " "))?;
        }
        Ok(())
    }
}

/// Why a call has no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered with an error status: the call ran (or was refused) there.
    #[error("server {server} answered: {:?}: {}", .status.code(), .status.message())]
    Status {
        /// The server that answered.
        server: SocketAddr,
        /// Its answer.
        status: Status,
    },
    /// A call that is not idempotent was sent and its server failed before answering: it may or
    /// may not have run, so it was not sent again.
    #[error(
        "the call may or may not have run on {server}, which failed before answering ({cause}); \
         it is not idempotent, so it was not sent again: check its effect before repeating it"
    )]
    OutcomeUnknown {
        /// The server that failed.
        server: SocketAddr,
        /// How it failed.
        cause: String,
    },
    /// No server could take the call.
    #[error("no server could take the call ({} servers, after {}):{report}", .report.0.len(), crate::call::human(*.elapsed))]
    AllServersDown {
        /// Each server with its cause.
        report: ServersReport,
        /// How long the call tried.
        elapsed: Duration,
    },
    /// The call's deadline passed before any server answered.
    #[error("no answer within the call deadline of {}:{report}", crate::call::human(*.deadline))]
    DeadlineExceeded {
        /// The deadline.
        deadline: Duration,
        /// Each server with its cause.
        report: ServersReport,
    },
    /// Too many retries lately (the retry budget is spent): not retried, to spare the servers.
    #[error("not retried: the client's retry budget is spent (too many failing calls):{report}")]
    RetryBudgetExhausted {
        /// Each server with its cause.
        report: ServersReport,
    },
}

impl CallError {
    /// The server's status when it answered with one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            CallError::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Each server with its cause, when no server took the call.
    pub fn servers(&self) -> Option<&ServersReport> {
        match self {
            CallError::AllServersDown { report, .. }
            | CallError::DeadlineExceeded { report, .. }
            | CallError::RetryBudgetExhausted { report } => Some(report),
            CallError::Status { .. } | CallError::OutcomeUnknown { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_server_on_one_line() {
        let report = ServersReport(vec![
            ServerReport {
                addr: "127.0.0.1:1".parse().unwrap(),
                names: vec!["0.ha.test".into(), "1.ha.test".into()],
                cause: "connection refused".into(),
            },
            ServerReport {
                addr: "127.0.0.2:1".parse().unwrap(),
                names: vec!["127.0.0.2".into()],
                cause: "a\nb".into(),
            },
        ]);
        let err = CallError::AllServersDown { report, elapsed: Duration::from_millis(12) };
        assert_eq!(
            err.to_string(),
            "no server could take the call (2 servers, after 12ms): 127.0.0.1:1 (0.ha.test, 1.ha.test): connection \
             refused; 127.0.0.2:1: a b"
        );
    }
}
