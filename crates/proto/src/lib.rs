//! The application server's gRPC API, as the clients and the server both see it.
//!
//! - `proto/dugong/v1/dugong.proto` — the services ([`v1::apps_server`] …, one per
//!   resource, plus `Watch` and `Info`) and their messages; the source of truth.
//! - [`v1`] — the Rust code tonic and prost generate from it at build time: a
//!   `*_client` and a `*_server` module per service.
//!
//! The standard `grpc.health.v1` service comes from `tonic-health`, not from here.

/// `package dugong.v1`: every service and message of the API.
pub mod v1 {
    tonic::include_proto!("dugong.v1");
}

/// The HTTP/2 keepalive agreement between Dugong's clients and servers.
///
/// A client pings its server while calls are open, to find a server that stopped answering (a
/// frozen process, a network that black-holes the connection) long before a request timeout
/// would. gRPC servers built on gRPC core punish pings more often than every 5 minutes with
/// `GOAWAY too_many_pings`; `dugong serve` (hyper and h2 underneath tonic) answers every ping
/// and keeps no ping strikes, and its policy is what this module says: clients may ping every
/// [`MIN_CLIENT_PING_INTERVAL`] while calls are open, no more often. The HA client refuses a
/// shorter interval, so a client never depends on a server tolerating more than it promised.
pub mod keepalive {
    use std::time::Duration;

    /// The shortest interval between a client's HTTP/2 PINGs, while it has calls open, that a
    /// Dugong server permits.
    pub const MIN_CLIENT_PING_INTERVAL: Duration = Duration::from_millis(500);
    /// How often the server pings an idle client connection, to find clients that went away.
    pub const SERVER_PING_INTERVAL: Duration = Duration::from_secs(30);
    /// How long the server waits for the answer to its ping before it closes the connection.
    pub const SERVER_PING_TIMEOUT: Duration = Duration::from_secs(10);
}
