//! Test-only helpers that run real PostgreSQL servers from the installed binaries.
//!
//! Most tests want [`Cluster::shared`] (one server per test binary) and a fresh database from
//! [`Cluster::create_database`]. Tests that stop, crash or restart a server start their own
//! with [`Cluster::start`]. Nothing here sleeps and hopes: waits have deadlines, and
//! [`wait_for`] polls a condition with one.
//!
//! Modules, in the order a cluster's life uses them:
//!
//! - `install` — finds `initdb`/`pg_ctl` (newest under `/usr/lib/postgresql`, or
//!   `$DUGONG_TEST_PG_BIN`).
//! - `port` — [`free_port`], picked below the kernel's ephemeral range.
//! - `process` — runs server programs as `postgres` when we are root; process liveness from
//!   `/proc`.
//! - `watchdog` — detached processes that stop the server and remove its directory, or delete
//!   a test network's namespaces, once the test process is gone, however it went.
//! - `tls` — a CA and a server certificate for a TLS cluster (`ClusterOptions::tls`).
//! - `settings` — [`ClusterOptions`] and the settings file they become.
//! - `cluster` — [`Cluster`]: initdb, start, stop, kill9, restart, drop.
//! - `server_log` — reading the server log into start errors.
//! - `client` — connection settings, clients, per-test databases.
//! - `wait` — [`wait_for`].
//! - `dns` — [`TestDns`]: a DNS server in-process whose records tests change at run time.
//! - `proxy` — [`FaultProxy`]: a TCP proxy that loses an answer on purpose.
//! - `link` — [`DelayLink`]: a WAN on loopback, every chunk delivered a fixed delay late,
//!   counting round trips.
//! - `network` — [`TestNetwork`]: network namespaces joined by veth links that tests cut and
//!   heal, PostgreSQL ([`Cluster::start_in`]) and programs ([`Namespace::command`]) inside.
//! - `certs` — [`TestCa`]: CAs and certificates for TLS tests of our own servers.
//! - `error` — [`TestkitError`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), dugong_testkit::TestkitError> {
//! use dugong_testkit::Cluster;
//! let cluster = Cluster::shared();
//! let db = cluster.create_database("my_test").await?;
//! cluster.psql(&db, "CREATE TABLE t (id int PRIMARY KEY)").await?;
//! let client = cluster.connect(&db).await?;
//! # Ok(()) }
//! ```

mod certs;
mod client;
mod cluster;
pub mod dns;
mod error;
mod install;
mod link;
mod network;
mod port;
mod process;
mod proxy;
mod server_log;
mod settings;
mod tls;
mod wait;
mod watchdog;

pub use certs::{CertFiles, TestCa};
pub use cluster::Cluster;
pub use dns::TestDns;
pub use error::TestkitError;
pub use install::PG_BIN_ENV;
pub use link::{DelayLink, LinkCounts, Probe};
pub use network::{Namespace, TestNetwork};
pub use port::free_port;
pub use proxy::FaultProxy;
pub use settings::ClusterOptions;
pub use wait::wait_for;
