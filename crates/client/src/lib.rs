//! The Dugong HA client: finds every application server, spreads sessions over them by weight,
//! fails over when one dies, and keeps a failed server out for the reconnect delay.
//!
//! Modules, in the order a call uses them:
//!
//! - `config` — [`ClientConfig`]: `grpc://DOMAIN:PORT` with `N` numbered names or a `HOST:PORT`
//!   list, the reconnect delay and timeouts; from code, flags ([`ConnectArgs`]) or `DUGONG_*`
//!   environment variables; [`ConfigError`] says what is wrong in words.
//! - `discovery` — names to addresses with hickory (system resolver or `--dns`), weights from
//!   names per address, re-resolution within TTL bounds, the last good answer kept when DNS fails.
//! - `select` — weighted random draws over live servers, quarantine with jitter and a single
//!   re-admission attempt per delay, the retry budget. Pure state machines.
//! - `call` — [`Client`]: sessions, the call loop, what may be retried ([`Idempotency`]),
//!   [`CallError`] listing every server and its cause; a tonic channel per address.
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
pub mod watch;

pub use call::{CallError, Client, Idempotency, ServerReport, ServersReport};
pub use config::{
    parse_duration, ClientConfig, ConfigError, ConnectArgs, HostPort, Target, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DEADLINE, DEFAULT_DNS_MAX_TTL, DEFAULT_DNS_MIN_TTL, DEFAULT_KEEPALIVE, DEFAULT_RECONNECT_DELAY,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use select::{Health, ServerStatus};
