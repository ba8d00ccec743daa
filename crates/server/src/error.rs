//! Errors: why a server could not start ([`ServerError`]) and why a call
//! failed ([`ApiError`]), mapped in one place to gRPC codes and HTTP statuses
//! so both front ends answer alike.

use axum::http::StatusCode;
use dugong_store::StoreError;

use crate::auth::AuthError;
use crate::config::ConfigError;

/// Why [`crate::run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database {db}: {source}")]
    Store { db: String, source: StoreError },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A request that can't be read: bad JSON, query or path.
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body must be JSON (Content-Type: application/json)")]
    NotJson,
    #[error("no such route: {method} {path} (see /api/v1/openapi.json)")]
    NoRoute { method: String, path: String },
    #[error("the server is shutting down; reconnect to any server")]
    ShuttingDown,
}

impl ApiError {
    /// A stable, machine-readable name for the error's class.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Store(StoreError::Invalid { .. }) | ApiError::BadRequest(_) => "invalid_argument",
            ApiError::Store(StoreError::NotFound { .. }) => "not_found",
            ApiError::Store(StoreError::Conflict { .. }) => "conflict",
            ApiError::Store(StoreError::Duplicate { .. }) => "already_exists",
            ApiError::Store(StoreError::Unavailable(_)) | ApiError::ShuttingDown => "unavailable",
            // The write may have committed: not "unavailable", which invites
            // a blind retry.
            ApiError::Store(StoreError::OutcomeUnknown(_)) => "outcome_unknown",
            ApiError::Store(_) => "internal",
            ApiError::Auth(AuthError::NotAdmin) => "permission_denied",
            ApiError::Auth(_) => "unauthenticated",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::NotJson => "unsupported_media_type",
            ApiError::NoRoute { .. } => "no_route",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self.code() {
            "invalid_argument" => StatusCode::BAD_REQUEST,
            "not_found" | "no_route" => StatusCode::NOT_FOUND,
            "conflict" | "already_exists" => StatusCode::CONFLICT,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self.code() {
            "invalid_argument" => Code::InvalidArgument,
            "not_found" | "no_route" => Code::NotFound,
            // AIP-154: a failed version check is ABORTED (re-read, then retry).
            "conflict" => Code::Aborted,
            "already_exists" => Code::AlreadyExists,
            "unavailable" => Code::Unavailable,
            "unauthenticated" => Code::Unauthenticated,
            "permission_denied" => Code::PermissionDenied,
            // gRPC's code for "the operation may or may not have happened".
            "outcome_unknown" => Code::Unknown,
            "too_large" => Code::ResourceExhausted,
            _ => Code::Internal,
        };
        let mut status = tonic::Status::new(code, self.public_message());
        if let ApiError::Store(StoreError::Conflict { current, .. }) = self {
            if let Ok(v) = current.to_string().parse() {
                status.metadata_mut().insert("dugong-current-version", v);
            }
        }
        status
    }

    /// What the client is told. Internal failures are logged here, where they
    /// are handled, and the client gets a generic line (the details may name
    /// database internals).
    pub fn public_message(&self) -> String {
        if self.code() == "internal" {
            tracing::error!(error = %self, "request failed");
            return "internal error (logged on the server)".into();
        }
        self.to_string()
    }

    /// The current version, for conflicts.
    pub fn current_version(&self) -> Option<i64> {
        match self {
            ApiError::Store(StoreError::Conflict { current, .. }) => Some(*current),
            _ => None,
        }
    }
}
