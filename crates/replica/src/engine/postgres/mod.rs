//! The PostgreSQL engine: replication between PostgreSQL databases.
//!
//! - `bell`: the doorbell, a logical-decoding stream that wakes the
//!   replicator when a commit wrote a source's change logs.
//! - `connect`, `tls`: connections with the session settings every replicator
//!   connection uses, and TLS as each database's `sslmode` asks.
//! - `catalog`: a database's tables as the plan's catalog rows.
//! - `capture`: the `dugong` schema, statement-level triggers into change logs
//!   indexed by transaction id, `--uninstall`.
//! - `prepare`: connect, claim (a session advisory lock per sync), check,
//!   install, load cursors; `node`: what the engine keeps per database.
//! - `snapshot`: `pg_snapshot` cursors and batch bounds; `format`: COPY's
//!   text or binary format between servers.
//! - `read`: the poll, each source's run snapshot and window, change counts
//!   and changed keys; `apply`: deletes and COPY streams; `record`: run
//!   state, conflict log, commits and cursor advances; `upkeep`: purges and
//!   vacuums of the change logs beside the runs; `copy`: `onetimecopy`;
//!   `flight`: runs whose commits on far databases are not answered yet;
//!   `durable`: small runs' commits that do not wait for the flush, and the
//!   advances that wait for it instead.
//! - `conflicts`: both versions of conflicted rows, the conflict log's purge
//!   and what `dugong conflicts` reads; `restore`: a losing version written
//!   back.
//! - `status`, `compare`: what `dugong status` and `dugong compare` read.
//! - `setup`: `dugong setup`'s checks, schema copy, online copy and
//!   sequences; `repair`: `dugong repair`; `consistency`: the background
//!   consistency check; `rows`: rows read and written by key (for both).

mod apply;
pub mod bell;
pub mod capture;
mod catalog;
pub(crate) mod compare;
pub(crate) mod conflicts;
mod connect;
pub mod consistency;
mod copy;
pub(crate) mod ddl;
mod durable;
mod flight;
mod format;
mod node;
mod orphans;
mod prepare;
mod read;
mod record;
pub(crate) mod repair;
pub(crate) mod restore;
mod rows;
pub mod setup;
pub mod snapshot;
pub(crate) mod status;
mod tls;
mod upkeep;
mod watch;

pub use bell::{subscribe, BellState, Doorbell, Subscription};
pub use capture::uninstall;
pub use connect::{connect, connect_as, connect_to};
pub use format::CopyFormat;
pub use node::{Node, Postgres};
pub use prepare::COMMIT_TIMESTAMP_ADVICE;

use super::{Bells, Engine, Prepared};
use crate::apply::{TableConflict, TablePlan, Totals};
use crate::error::ReplicaError;
use crate::plan::SyncPlan;
use crate::read::{ChangedKeys, KeyRequest, RunLimits, SourceRead, TextKey, DEFAULT_BATCH_ROWS};
use crate::record::conflict::{Orphan, RunConflict};
use crate::record::{Backlog, FlightCounts, Missing, Replicator, RunOutcome};
use dugong_config::{Config, Sync};
use dugong_core::DbId;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Prepares `sync` for this process: see [`Engine::prepare`].
pub async fn prepare(config: &Config, sync: &Sync) -> Result<Prepared<Postgres>, ReplicaError> {
    prepare::prepare(config, sync, &Replicator::this_process()).await
}

impl Engine for Postgres {
    type Key = TextKey;
    const NAME: &'static str = "postgres";
    const DEFAULT_BATCH_ROWS: usize = DEFAULT_BATCH_ROWS;

    async fn prepare(config: &Arc<Config>, sync: &Sync, who: &Replicator) -> Result<Prepared<Self>, ReplicaError> {
        prepare::prepare(config, sync, who).await
    }

    async fn record_unprepared(
        config: &Arc<Config>,
        sync: &Sync,
        who: &Replicator,
        started: SystemTime,
        error: &str,
    ) -> Vec<(DbId, bool)> {
        let mut reached = Vec::new();
        let mut clients = Vec::new();
        for id in sync.databases() {
            match connect_to(config, id).await {
                Ok(c) => {
                    reached.push((id, true));
                    clients.push((id, c));
                }
                Err(err) => {
                    reached.push((id, false));
                    tracing::debug!(db = %id, error = %err, "database unreachable");
                }
            }
        }
        // State can only be recorded where Dugong's schema exists.
        let mut usable = Vec::new();
        for (id, c) in &clients {
            if c.query_one("SELECT to_regclass('dugong.sync_state') IS NOT NULL", &[])
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false)
            {
                usable.push((*id, c));
            }
        }
        record::record_bad(&usable, &sync.name, who, started, error).await;
        reached
    }

    type Watch = watch::Watch;

    fn watch(config: &Arc<Config>, sync: &Sync) -> watch::Watch {
        watch::Watch::new(config.clone(), sync.clone())
    }

    async fn heartbeat(watch: &mut watch::Watch, who: &Replicator) -> Vec<(DbId, bool)> {
        watch.heartbeat(who).await
    }

    async fn backlog(watch: &mut watch::Watch) -> Vec<(DbId, Option<Backlog>)> {
        watch.backlog().await
    }

    fn key_text(key: &TextKey) -> TextKey {
        key.clone()
    }

    async fn probe(config: &Arc<Config>, db: DbId) -> bool {
        connect_as(config, db, "dugong replicate (probe)").await.is_ok()
    }

    fn databases(&self) -> Vec<DbId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn missing(&self) -> &[Missing] {
        &self.missing
    }

    /// A share of each source's [`Doorbell`] (one per database in this
    /// process, whichever syncs read it); each is left when its entry of the
    /// returned bells is dropped.
    fn doorbells(config: &Arc<Config>, sync: &Sync, ring: &Arc<Notify>) -> Bells {
        let mut bells = Bells::default();
        for &db in &sync.sources {
            bells.push(bell::subscribe(config, db, ring));
        }
        bells
    }

    fn without_commit_timestamps(&self) -> Vec<DbId> {
        self.sources().filter(|n| !n.commit_timestamps).map(|n| n.id).collect()
    }

    async fn pending(&mut self) -> Result<bool, ReplicaError> {
        read::pending(self).await
    }

    fn in_flight(&self) -> bool {
        self.flights.any()
    }

    fn flight_counts(&self) -> FlightCounts {
        self.flights.counts()
    }

    fn idle(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.source) {
            upkeep::when_idle(node);
        }
    }

    async fn begin(&mut self, plan: &Arc<SyncPlan>, limits: RunLimits) -> Result<Vec<SourceRead>, ReplicaError> {
        read::begin(self, plan, limits).await
    }

    async fn read_keys(
        &mut self,
        plan: &Arc<SyncPlan>,
        requests: &[KeyRequest],
    ) -> Result<Vec<ChangedKeys<TextKey>>, ReplicaError> {
        read::read_keys(self, plan, requests).await
    }

    async fn conflict_versions(
        &mut self,
        plan: &Arc<SyncPlan>,
        conflicts: Vec<TableConflict<TextKey>>,
    ) -> Result<Vec<RunConflict>, ReplicaError> {
        conflicts::versions(self, plan, conflicts).await
    }

    async fn apply(&mut self, plan: &Arc<SyncPlan>, tables: Vec<TablePlan<TextKey>>) -> Result<Totals, ReplicaError> {
        let (totals, staged) = apply::apply_all(self, plan, &tables).await?;
        for (db, sql) in staged {
            if let Some(node) = self.nodes.iter_mut().find(|n| n.id == db) {
                node.staged = sql;
            }
        }
        Ok(totals)
    }

    async fn commit(
        &mut self,
        plan: &Arc<SyncPlan>,
        who: &Replicator,
        outcome: &RunOutcome,
    ) -> Result<(), ReplicaError> {
        let committed = record::commit(plan, self, who, outcome).await;
        for n in &mut self.nodes {
            n.staged.clear();
        }
        for (db, answer) in committed? {
            if let Some(n) = self.nodes.iter_mut().find(|n| n.id == db) {
                n.answered = Some(answer);
            }
        }
        Ok(())
    }

    async fn advance(&mut self, plan: &Arc<SyncPlan>) -> Result<(), ReplicaError> {
        record::advance(self, plan.name()).await
    }

    async fn rollback(&mut self) {
        self.windows.clear();
        for n in &mut self.nodes {
            n.staged.clear();
            n.answered = None;
        }
        node::rollback_all(self).await;
        // The run may have failed because one in flight did: start again from
        // what every database confirmed.
        flight::settle_after_rollback(self).await;
        // Before the engine may be dropped, the good runs' advances go.
        durable::settle(self).await;
    }

    async fn finish_upkeep(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.source) {
            upkeep::finish(node).await;
        }
    }

    async fn initial_copy(
        &mut self,
        plan: &Arc<SyncPlan>,
        progress: bool,
        shutdown: &CancellationToken,
        recopy: &[String],
    ) -> Result<(), ReplicaError> {
        copy::initial_copy(plan, self, progress, shutdown, recopy).await
    }

    async fn check_unchanged(&mut self, plan: &Arc<SyncPlan>) -> Result<(), ReplicaError> {
        // Statements between runs go behind the runs in flight: those settle
        // first, so one that failed there is dealt with, not met again.
        flight::settle(self, true).await?;
        prepare::check_unchanged(plan, self).await
    }

    async fn record_idle(&mut self, plan: &Arc<SyncPlan>, who: &Replicator) -> Result<(), ReplicaError> {
        flight::settle(self, true).await?;
        record::record_idle(plan, self, who).await
    }

    async fn record_bad(&mut self, plan: &Arc<SyncPlan>, who: &Replicator, started: SystemTime, error: &str) {
        let clients: Vec<_> = self.nodes.iter().map(|n| (n.id, &*n.client)).collect();
        record::record_bad(&clients, plan.name(), who, started, error).await;
    }

    async fn check_orphans(&mut self, plan: &Arc<SyncPlan>) -> Result<Vec<Orphan>, ReplicaError> {
        flight::settle(self, true).await?;
        orphans::check(plan, self).await
    }

    async fn purge_conflicts(&mut self, plan: &Arc<SyncPlan>) -> Result<u64, ReplicaError> {
        flight::settle(self, true).await?;
        conflicts::purge(self, plan).await
    }

    async fn record_stopped(&mut self, plan: &Arc<SyncPlan>, who: &Replicator) {
        record::record_stopped(self, plan.name(), who).await;
    }
}
