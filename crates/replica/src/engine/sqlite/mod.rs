//! The SQLite engine: replication between SQLite files (`"url": "sqlite:PATH"`)
//! with the promises of the PostgreSQL engine — capture by triggers, no echo,
//! per-row conflicts, cursors advanced only after every file committed —
//! through the same run loop, daemon, status and compare.
//!
//! - `open`: opening a file, with errors that name it and the problem.
//! - `catalog`: the file's tables as the plan's catalog rows.
//! - `capture`: Dugong's `dugong_*` tables, row triggers numbering every
//!   change, `--uninstall`.
//! - `lease`: one replicator per sync; `node`: what the engine keeps per file.
//! - `read`: the poll, each source's window and change counts, changed keys;
//!   `apply`: deletes and upserts; `record`: run state, conflict log, commits
//!   and cursor advances (purging with them); `copy`: `onetimecopy`.
//! - `conflicts`: both versions of conflicted rows, the conflict log's
//!   upgrade and purge, what `dugong conflicts` reads; `restore`: a losing
//!   version written back.
//! - `status`, `compare`: what `dugong status` and `dugong compare` read.
//! - `value`: keys that hash, values as text, the encoding compare hashes.

mod apply;
mod capture;
mod catalog;
pub(crate) mod compare;
pub(crate) mod conflicts;
mod copy;
pub mod lease;
mod node;
pub mod open;
mod orphans;
mod read;
mod record;
pub(crate) mod restore;
pub(crate) mod status;
pub mod value;
mod watch;

pub use capture::{delta_name, install_schema, uninstall};
pub use node::{Files, Node, Sqlite};

use super::{Engine, Prepared};
use crate::apply::{TableConflict, TablePlan, Totals};
use crate::capture::Install;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::SyncPlan;
use crate::read::{ChangedKeys, KeyRequest, RunLimits, SourceRead, TextKey};
use crate::record::conflict::{Orphan, RunConflict};
use crate::record::{Backlog, Missing, Replicator, RunOutcome};
use dugong_config::{Config, Location, Sync};
use dugong_core::{DbId, SyncName};
use node::blocking;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use value::SqliteKey;

/// How many change rows a SQLite run ships per source by default: a run holds
/// every file's write lock, which the application's writes wait for (about
/// 140 ms for 20,000 rows here, 370 ms for 50,000), and bigger batches gain
/// SQLite nothing.
pub const DEFAULT_BATCH_ROWS: usize = 20_000;

/// The file of database `id`, when it is a SQLite database.
pub fn path_of(config: &Config, id: DbId) -> Result<&Path, ReplicaError> {
    match config.database(id).map(|d| &d.location) {
        Some(Location::Sqlite(path)) => Ok(path),
        Some(Location::Postgres(_)) => Err(ReplicaError::Config(format!("{id} is a PostgreSQL database, not SQLite"))),
        None => Err(ReplicaError::Config(format!("database id {} is not defined", id.0))),
    }
}

/// Prepares `sync` for this process: see [`Engine::prepare`].
pub async fn prepare(config: &Config, sync: &Sync) -> Result<Prepared<Sqlite>, ReplicaError> {
    Sqlite::prepare(&Arc::new(config.clone()), sync, &Replicator::this_process()).await
}

/// Opens, checks and installs everything a sync needs on its files. Blocking.
fn prepare_files(config: &Config, sync: &Sync, who: &Replicator) -> Result<(SyncPlan, Files), ReplicaError> {
    let ids = sync.databases();
    let owner = lease::owner_tag(who);
    let mut opened = Vec::with_capacity(ids.len());
    for id in &ids {
        let path = path_of(config, *id)?.to_path_buf();
        let mut conn = open::open(*id, &path)?;
        install_schema(&mut conn, *id)?;
        opened.push((*id, path, conn));
    }
    for (id, _, conn) in &opened {
        lease::claim(conn, *id, &sync.name, who, &owner)?;
    }
    let plan = SyncPlan::new(config, sync, catalog::select(opened.iter().map(|(id, _, conn)| (*id, conn)), sync)?)?;
    let configured: Vec<(String, String)> = config
        .syncs
        .iter()
        .flat_map(|s| s.databases().into_iter().map(move |d| (s.name.to_string(), d.to_string())))
        .collect();
    let mut nodes = Vec::with_capacity(opened.len());
    for (id, path, mut conn) in opened {
        let what = Install::for_database(&plan, id);
        for (table, reason) in &what.held {
            tracing::warn!(db = %id, table = %table.name, reason = %reason, "table held: its changes wait until it matches in every file");
        }
        let installed = capture::install(&mut conn, id, &what)?;
        let positions = if what.source { read_positions(&conn, id, &sync.name)? } else { BTreeMap::new() };
        record::ensure_row(&conn, id, &sync.name)?;
        if what.source {
            for stale in forget_stale_cursors(&conn, id, &configured)? {
                tracing::warn!(db = %id, removed = %stale, "removed the position of a sync or target that is no longer configured, so it cannot block purging");
            }
        }
        let mut node = Node {
            id,
            path,
            conn,
            source: what.source,
            captures: installed.captures,
            held: installed.held,
            sweep: installed.released,
            positions,
            cursor: 0,
            schema_version: 0,
        };
        node.cursor = node.window_start();
        nodes.push(node);
    }
    // Read last: installing capture changes the schema too.
    for node in &mut nodes {
        node.schema_version = read::schema_version(&node.conn, node.id)?;
    }
    Ok((plan, Files { nodes, owner, windows: Vec::new() }))
}

/// The sync's positions on a source file, per target.
fn read_positions(conn: &Connection, id: DbId, sync: &SyncName) -> Result<BTreeMap<DbId, i64>, ReplicaError> {
    let ctx = || format!("reading the positions of {sync}");
    let mut stmt =
        conn.prepare("SELECT target, seq FROM dugong_cursor WHERE sync = ?1 AND target <> '*'").on_db(id, ctx)?;
    let rows = stmt.query_map([sync.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).on_db(id, ctx)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (target, seq) = row.on_db(id, ctx)?;
        let db = target.parse::<DbId>().map_err(|e| ReplicaError::Protocol { db: id, message: e.to_string() })?;
        out.insert(db, seq);
    }
    Ok(out)
}

/// Removes positions of syncs that are no longer configured, and of files no
/// longer in their sync, so they never keep change rows from being purged.
/// `configured` holds every `(sync, db<id>)` pair of the configuration.
fn forget_stale_cursors(
    conn: &Connection,
    id: DbId,
    configured: &[(String, String)],
) -> Result<Vec<String>, ReplicaError> {
    let ctx = || "removing positions of removed syncs and targets".to_string();
    let all: Vec<(String, String)> = {
        let mut stmt = conn.prepare("SELECT sync, target FROM dugong_cursor").on_db(id, ctx)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).on_db(id, ctx)?;
        rows.collect::<Result<_, _>>().on_db(id, ctx)?
    };
    let mut stale = Vec::new();
    for (sync, target) in all {
        let sync_known = configured.iter().any(|(s, _)| *s == sync);
        let known = configured.iter().any(|(s, t)| *s == sync && *t == target);
        if !sync_known || (target != "*" && !known) {
            conn.execute("DELETE FROM dugong_cursor WHERE sync = ?1 AND target = ?2", [&sync, &target])
                .on_db(id, ctx)?;
            stale.push(if target == "*" { sync } else { format!("{sync} to {target}") });
        }
    }
    Ok(stale)
}

/// Records a failed preparation on every file of the sync that can be opened
/// and has Dugong's tables. Blocking; never fails. Returns whether each file
/// could be opened.
fn record_bad_unprepared(
    config: &Config,
    sync: &Sync,
    who: &Replicator,
    started: SystemTime,
    error: &str,
) -> Vec<(DbId, bool)> {
    let mut reached = Vec::new();
    let mut conns = Vec::new();
    for id in sync.databases() {
        let conn = path_of(config, id).and_then(|path| open::open(id, path));
        reached.push((id, conn.is_ok()));
        let Ok(conn) = conn else { continue };
        let installed = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'dugong_sync_state')", [], |r| {
                r.get::<_, bool>(0)
            })
            .unwrap_or(false);
        if installed {
            conns.push((id, conn));
        }
    }
    let refs: Vec<(DbId, &Connection)> = conns.iter().map(|(id, c)| (*id, c)).collect();
    record::record_bad(&refs, &sync.name, who, started, error);
    reached
}

impl Engine for Sqlite {
    type Key = SqliteKey;
    const NAME: &'static str = "sqlite";
    const DEFAULT_BATCH_ROWS: usize = DEFAULT_BATCH_ROWS;

    async fn prepare(config: &Arc<Config>, sync: &Sync, who: &Replicator) -> Result<Prepared<Self>, ReplicaError> {
        let (config, sync, for_files) = (config.clone(), sync.clone(), who.clone());
        let (plan, files) = blocking(move || prepare_files(&config, &sync, &for_files)).await?;
        // A table whose hold was lifted ships whole in the first run, due at once.
        let sweep = files.nodes.iter().any(|n| !n.sweep.is_empty());
        let mut prepared = Prepared::new(plan, who.clone(), Sqlite::new(files));
        prepared.more_pending = sweep;
        Ok(prepared)
    }

    async fn record_unprepared(
        config: &Arc<Config>,
        sync: &Sync,
        who: &Replicator,
        started: SystemTime,
        error: &str,
    ) -> Vec<(DbId, bool)> {
        let (config, sync, who, error) = (config.clone(), sync.clone(), who.clone(), error.to_string());
        blocking(move || Ok(record_bad_unprepared(&config, &sync, &who, started, &error))).await.unwrap_or_default()
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

    fn key_text(key: &SqliteKey) -> TextKey {
        key.iter().map(value::KeyValue::text).collect()
    }

    async fn probe(config: &Arc<Config>, db: DbId) -> bool {
        let config = config.clone();
        blocking(move || open::open(db, path_of(&config, db)?)).await.is_ok()
    }

    fn databases(&self) -> Vec<DbId> {
        self.ids().to_vec()
    }

    fn missing(&self) -> &[Missing] {
        // SQLite files are local: one that cannot be opened fails the start.
        &[]
    }

    fn without_commit_timestamps(&self) -> Vec<DbId> {
        // The triggers record every change's time.
        Vec::new()
    }

    async fn pending(&mut self) -> Result<bool, ReplicaError> {
        self.with(|f| read::pending(f)).await
    }

    fn idle(&mut self) {
        // Change rows are purged with every cursor advance: nothing waits.
    }

    async fn begin(&mut self, plan: &Arc<SyncPlan>, limits: RunLimits) -> Result<Vec<SourceRead>, ReplicaError> {
        let plan = plan.clone();
        self.with(move |f| read::begin(f, &plan, limits)).await
    }

    async fn read_keys(
        &mut self,
        plan: &Arc<SyncPlan>,
        requests: &[KeyRequest],
    ) -> Result<Vec<ChangedKeys<SqliteKey>>, ReplicaError> {
        let (plan, requests) = (plan.clone(), requests.to_vec());
        self.with(move |f| read::read_keys(f, &plan, &requests)).await
    }

    async fn conflict_versions(
        &mut self,
        plan: &Arc<SyncPlan>,
        conflicts: Vec<TableConflict<SqliteKey>>,
    ) -> Result<Vec<RunConflict>, ReplicaError> {
        let plan = plan.clone();
        self.with(move |f| conflicts::versions(f, &plan, conflicts)).await
    }

    async fn apply(&mut self, plan: &Arc<SyncPlan>, tables: Vec<TablePlan<SqliteKey>>) -> Result<Totals, ReplicaError> {
        let plan = plan.clone();
        self.with(move |f| apply::apply_all(f, &plan, tables)).await
    }

    async fn commit(
        &mut self,
        plan: &Arc<SyncPlan>,
        who: &Replicator,
        outcome: &RunOutcome,
    ) -> Result<(), ReplicaError> {
        let (plan, who, outcome) = (plan.clone(), who.clone(), outcome.clone());
        self.with(move |f| record::commit(f, &plan, &who, &outcome)).await
    }

    async fn advance(&mut self, plan: &Arc<SyncPlan>) -> Result<(), ReplicaError> {
        let sync = plan.name().clone();
        self.with(move |f| record::advance(f, &sync)).await
    }

    async fn rollback(&mut self) {
        let _ = self
            .with(|f| {
                f.windows.clear();
                record::rollback_all(f);
                Ok(())
            })
            .await;
    }

    async fn finish_upkeep(&mut self) {}

    async fn initial_copy(
        &mut self,
        plan: &Arc<SyncPlan>,
        _progress: bool,
        _shutdown: &CancellationToken,
        recopy: &[String],
    ) -> Result<(), ReplicaError> {
        let (plan, recopy) = (plan.clone(), recopy.to_vec());
        self.with(move |f| copy::initial_copy(f, &plan, &recopy)).await
    }

    async fn check_unchanged(&mut self, plan: &Arc<SyncPlan>) -> Result<(), ReplicaError> {
        let plan = plan.clone();
        self.with(move |f| {
            let now = catalog::select(f.nodes.iter().map(|n| (n.id, &n.conn)), &plan.sync)?;
            plan.check_unchanged(now, f.nodes[0].id)
        })
        .await
    }

    async fn record_idle(&mut self, plan: &Arc<SyncPlan>, who: &Replicator) -> Result<(), ReplicaError> {
        let (plan, who) = (plan.clone(), who.clone());
        self.with(move |f| record::record_idle(f, &plan, &who)).await
    }

    async fn record_bad(&mut self, plan: &Arc<SyncPlan>, who: &Replicator, started: SystemTime, error: &str) {
        let (sync, who, error) = (plan.name().clone(), who.clone(), error.to_string());
        let _ = self
            .with(move |f| {
                record::rollback_all(f);
                let conns: Vec<(DbId, &Connection)> = f.nodes.iter().map(|n| (n.id, &n.conn)).collect();
                record::record_bad(&conns, &sync, &who, started, &error);
                Ok(())
            })
            .await;
    }

    async fn check_orphans(&mut self, plan: &Arc<SyncPlan>) -> Result<Vec<Orphan>, ReplicaError> {
        let plan = plan.clone();
        self.with(move |f| orphans::check(f, &plan)).await
    }

    async fn purge_conflicts(&mut self, plan: &Arc<SyncPlan>) -> Result<u64, ReplicaError> {
        let plan = plan.clone();
        self.with(move |f| conflicts::purge(f, &plan)).await
    }

    async fn record_stopped(&mut self, plan: &Arc<SyncPlan>, _who: &Replicator) {
        let sync = plan.name().clone();
        let _ = self
            .with(move |f| {
                record::record_stopped(f, &sync);
                Ok(())
            })
            .await;
    }
}
