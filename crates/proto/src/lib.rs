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
