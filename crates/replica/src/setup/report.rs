//! What `dugong setup` is asked ([`SetupOptions`]), what it did
//! ([`SetupReport`]) and why it stopped ([`SetupError`]).

use super::checks::{describe, Problem};
use crate::compare::SyncComparison;
use crate::error::ReplicaError;
use serde::Serialize;

/// What `dugong setup` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// The sync to set up; the configuration's only (or first) sync when not given.
    pub sync: Option<String>,
    /// Replace the rows of target tables that have some.
    pub force: bool,
    /// Show a progress bar for the copy (on a terminal); log lines otherwise.
    pub progress_bar: bool,
}

/// Why setup did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The sites are not ready; nothing was changed.
    #[error("{}", describe(problems))]
    Refused { problems: Vec<Problem> },
    /// `pg_dump` or `pg_restore` failed (or is missing).
    #[error("{0}")]
    Tool(String),
    /// The operator answered no; nothing was changed.
    #[error("setup cancelled; nothing was changed")]
    Declined,
}

impl SetupError {
    /// A database could not be reached.
    pub fn is_unreachable(&self) -> bool {
        match self {
            SetupError::Replica(e) => e.is_unreachable(),
            SetupError::Refused { problems } => problems.iter().any(|p| p.unreachable),
            SetupError::Tool(_) | SetupError::Declined => false,
        }
    }
}

/// What one new site received.
#[derive(Debug, Clone, Serialize)]
pub struct SiteCopy {
    pub database: String,
    /// The schema was copied (it had none).
    pub schema_copied: bool,
    pub tables: usize,
    pub rows: u64,
    pub seconds: f64,
}

/// What setup did.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub sync: String,
    /// The live site the others were copied from.
    pub origin: String,
    /// Sites set up by this run.
    pub copied: Vec<SiteCopy>,
    /// Sites that were set up before.
    pub already: Vec<String>,
    /// Sequences interleaved by this run, one line each.
    pub sequences: Vec<String>,
    /// Rows shipped by the catch-up run after the copy.
    pub caught_up_rows: u64,
    /// The catch-up was left to a replicator that runs the sync.
    pub replicator_running: bool,
    /// Anything changed at all.
    pub changed: bool,
    /// The comparison at the end.
    pub compare: Option<SyncComparison>,
}
