//! The Dugong replicator: asynchronous master-master replication of PostgreSQL
//! tables or SQLite files, Bucardo-compatible in configuration and status.
//!
//! A sync runs as a pipeline of stages, each a module, in the order data flows:
//! - [`plan`]: what a sync replicates — its tables chosen and checked on every
//!   database, the order in which databases win ties, the initial copy's routes.
//! - [`capture`]: triggers record changed keys on each source, in the
//!   application's transaction; what each database captures.
//! - [`read`]: each source's pending changes in one snapshot, counted per table,
//!   bounded to a batch; which changed keys a run must read.
//! - [`resolve`]: per-row conflict resolution, pure functions.
//! - [`apply`]: what every database does for each changed table.
//! - [`record`]: what a run did, and the state status reads.
//! - [`upkeep`]: when shipped change rows are purged and the logs vacuumed.
//!
//! The stages decide; an [`engine`] does the I/O they ask for, on
//! [`engine::postgres`] or [`engine::sqlite`] — both behind one seam,
//! [`engine::Engine`]. [`run`] is the one run loop over either engine and
//! [`daemon`] the one daemon: a task per sync, polling, backoff, self-healing,
//! shutdown. The operator views, [`status`], [`compare`] and [`conflicts`]
//! (the conflict log, and restoring a losing version), read the databases
//! through the engines and render one report; [`uninstall`] removes it all.
//! The operator tools: [`setup`] (a live site and empty ones to
//! master-master, online), [`repair`] (diverged databases made identical,
//! every change in the conflict log) and [`consistency`] (the daemon's
//! background check, exporting rows known to differ).
//! `error`: error kinds and the policy the daemon applies to each.

pub mod apply;
pub mod capture;
pub mod compare;
pub mod conflicts;
pub mod consistency;
pub mod daemon;
pub mod ddl;
pub mod diff;
pub mod engine;
mod error;
pub mod metrics;
pub mod plan;
pub mod read;
pub mod record;
pub mod repair;
pub mod resolve;
pub mod run;
pub mod setup;
pub mod status;
pub mod uninstall;
pub mod upkeep;

pub use error::{describe_pg, Backoff, ErrorClass, ErrorPolicy, ReplicaError, StatementContext};
