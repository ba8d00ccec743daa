//! One run of a sync, on any engine: read every source's pending changes in
//! one snapshot each, resolve conflicts per row, apply to every other database
//! in one transaction each, record the run in those transactions, and only
//! after all of them committed, advance the sources' positions.
//!
//! A crash at any point repeats at most the last run: its changes are shipped
//! again as row states, which is idempotent — nothing is lost or duplicated.

use crate::apply;
use crate::engine::{Engine, Prepared};
use crate::error::ReplicaError;
use crate::read::{self, NewKeys};
use crate::record::{self, RunOutcome};
use std::time::{Instant, SystemTime};

pub use crate::read::RunLimits;

/// Runs the sync once. Returns at once with `empty` when nothing is pending.
pub async fn run_once<E: Engine>(p: &mut Prepared<E>, limits: RunLimits) -> Result<RunOutcome, ReplicaError> {
    // After a bounded run the poll is redundant: changes are known to wait.
    let known_pending = std::mem::take(&mut p.more_pending);
    if !known_pending && !p.engine.pending().await? {
        // Caught up: in a lull, the engine does what big runs left.
        p.engine.idle();
        return Ok(RunOutcome { empty: true, in_flight: p.engine.in_flight(), ..Default::default() });
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut outcome = match run_and_commit(p, limits, NewKeys::Trust, started).await {
        // A key inserted on its source already exists on a target: a run
        // repeated after a crash, or an application's insert of the same key.
        // Run again, deleting every changed key first.
        Err(ReplicaError::ConcurrentWrite { db, table }) => {
            tracing::debug!(db = %db, table = %table, "a new key already exists on a target; running again with deletes");
            p.engine.rollback().await;
            run_and_commit(p, limits, NewKeys::Verify, started).await
        }
        other => other,
    }?;
    let phase = Instant::now();
    p.engine.advance(&p.plan).await?;
    outcome.phases.advance = phase.elapsed();
    p.more_pending = outcome.more;
    outcome.in_flight = p.engine.in_flight();
    outcome.duration = clock.elapsed();
    Ok(outcome)
}

/// A run up to and including its commits; rolled back when it fails. A small
/// run's rows travel with the commits, so a clash with an application's
/// insert can show there too.
async fn run_and_commit<E: Engine>(
    p: &mut Prepared<E>,
    limits: RunLimits,
    new_keys: NewKeys,
    started: SystemTime,
) -> Result<RunOutcome, ReplicaError> {
    let mut outcome = match run_in_transactions(p, limits, new_keys).await {
        Ok(outcome) => outcome,
        Err(e) => {
            p.engine.rollback().await;
            return Err(e);
        }
    };
    outcome.started = Some(started);
    let phase = Instant::now();
    p.engine.commit(&p.plan, &p.who, &outcome).await?;
    outcome.phases.commit = phase.elapsed();
    Ok(outcome)
}

/// Whether any source has changes the sync has not shipped.
pub async fn pending<E: Engine>(p: &mut Prepared<E>) -> Result<bool, ReplicaError> {
    p.engine.pending().await
}

/// Everything of a run up to (not including) the commits.
async fn run_in_transactions<E: Engine>(
    p: &mut Prepared<E>,
    limits: RunLimits,
    new_keys: NewKeys,
) -> Result<RunOutcome, ReplicaError> {
    let mut outcome = RunOutcome::default();
    // 1. Count every source's pending changes, in its run snapshot; then read
    // the changed keys each table needs: all of them where sources compete,
    // only those to delete first where one source changed the table.
    let phase = Instant::now();
    let reads = p.engine.begin(&p.plan, limits).await?;
    // A target that was away is sent again some of what the others have: keys
    // only ever inserted may well be there already.
    let new_keys = if reads.iter().any(|r| r.uneven) { NewKeys::Verify } else { new_keys };
    let (how, requests) = read::key_requests(&reads, p.plan.tables.len(), new_keys);
    let keys = p.engine.read_keys(&p.plan, &requests).await?;
    outcome.phases.read = phase.elapsed();

    // 2. Resolve each table, and plan what every database must do.
    let (plans, conflicts) = apply::plan_tables(&p.plan, &reads, &how, &requests, keys, new_keys)?;
    // Keep both versions of each conflicted row for the conflict log: read
    // now, before the apply overwrites the losers' versions.
    if !conflicts.is_empty() {
        outcome.conflicts = p.engine.conflict_versions(&p.plan, conflicts).await?;
    }

    // 3. Apply on every database, in its run transaction.
    let totals = p.engine.apply(&p.plan, plans).await?;
    outcome.deletes = totals.deletes;
    outcome.inserts = totals.inserts;
    outcome.truncates = totals.truncates;
    outcome.phases.delete = totals.delete_time;
    outcome.phases.copy = totals.copy_time;
    outcome.more = reads.iter().any(|r| r.more);
    outcome.lag = record::lag(read::oldest(&reads));
    Ok(outcome)
}
