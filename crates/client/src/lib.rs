//! The Dugong HA client: finds every application server, spreads sessions over them by weight,
//! fails over when one dies, and keeps a failed server out for the reconnect delay.
//!
//! Modules, in the order a call uses them:
//!
//! - `config` — [`ClientConfig`]: `grpc://DOMAIN:PORT` (or `grpcs://`) with `N` numbered names or a
//!   `HOST:PORT` list, the reconnect delay, timeouts, keepalive, TLS roots and the token; from
//!   code, flags ([`ConnectArgs`]) or `DUGONG_*` environment variables; [`ConfigError`] says what
//!   is wrong in words.
//! - `discovery` — names to addresses with hickory (system resolver or `--dns`), weights from
//!   names per address, re-resolution within TTL bounds, the last good answer kept when DNS fails.
//! - `select` — weighted random draws over live servers, quarantine with jitter and a single
//!   re-admission attempt per delay, failing open when every server is out, the retry budget.
//!   Pure state machines.
//! - `transport` — one connection to one server: TCP dialled by the client, TLS checked against
//!   the DNS name used, HTTP/2 with keepalive pings, and no reconnecting behind the quarantine's
//!   back; [`ServerChannel`] adds the token, which never goes in cleartext beyond loopback.
//! - `call` — [`Client`]: sessions, connection attempts shared by every call that wants them,
//!   Happy Eyeballs between servers, the call loop, what may be retried ([`Idempotency`]) and what
//!   surely never reached a server, [`CallError`] listing every server and its cause.
//! - `watch` — [`watch::resume`]: a server stream that resumes on another server from the last
//!   position (and [`watch::resume_marked`], which also leaves a server that says it goes away).
//! - [`api`] — the application server's API (`dugong_proto::v1`) through [`Client::call`]: the
//!   bearer token as metadata, and which calls may be retried (puts only with an expected version).
//! - `cli` — `dugong client …` as library functions (the binary only wires them in).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dugong_client::{Client, ClientConfig, Idempotency};
//! use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
//!
//! let client = Client::new(ClientConfig::url("grpc://ha.test:8001", Some(2))?).await?;
//! let reply = client
//!     .call(Idempotency::Idempotent, |channel| async move {
//!         HealthClient::new(channel).check(HealthCheckRequest::default()).await
//!     })
//!     .await?;
//! println!("{:?} answered: {:?}", client.current_server(), reply.into_inner().status());
//! # Ok(()) }
//! ```

pub mod api;
mod call;
pub mod cli;
mod config;
mod discovery;
mod select;
mod transport;
pub mod watch;

pub use call::{CallError, Client, Idempotency, ServerReport, ServersReport};
pub use config::{
    parse_duration, ClientConfig, ConfigError, ConnectArgs, HostPort, Scheme, Target, Token, DEFAULT_CONNECT_STAGGER,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEADLINE, DEFAULT_DNS_MAX_TTL, DEFAULT_DNS_MIN_TTL, DEFAULT_FAIL_OPEN_INTERVAL,
    DEFAULT_KEEPALIVE, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_RECONNECT_DELAY, DEFAULT_REQUEST_TIMEOUT,
};
pub use select::{Health, ServerStatus};
pub use transport::ServerChannel;
