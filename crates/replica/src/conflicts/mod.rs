//! `dugong conflicts`: the conflict log for operators — every conflict with
//! both versions of its row, who won and why — and `restore`, which writes a
//! losing version back.
//!
//! Every database of a sync holds the same log (each run writes its
//! conflicts to all of them, under ids derived from the content), so
//! [`list`] reads every database of each sync that answers and merges their logs. [`restore`]
//! finds the conflict the same way, then writes the losing version on the
//! database that lost, as an ordinary write the replicator captures and
//! ships to the others (`engine::*::restore`). `render`: the readable table.

mod render;

pub use render::{render_local, render_restored, render_text};

use crate::engine::{postgres, sqlite};
use crate::error::{describe_pg, ReplicaError};
use crate::plan;
use crate::record::conflict::{ConflictKind, LogFilter, LogShape, LoggedConflict, RestoreError, RestoreWrite};
use dugong_config::{Config, Location, Sync};
use dugong_core::DbId;
use futures_util::future::join_all;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::Client;

/// How many conflicts `dugong conflicts` lists unless told.
pub const DEFAULT_LIMIT: usize = 50;

/// How long connecting to one database may take.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// One sync, or all of the configuration's.
    pub sync: Option<String>,
    /// `schema.name`, or a bare name in any schema.
    pub table: Option<String>,
    /// Only conflicts logged within this long.
    pub since: Option<Duration>,
    pub limit: usize,
}

/// The conflicts listed, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictList {
    pub conflicts: Vec<LoggedConflict>,
    /// More conflicts match than `limit` allowed.
    pub more: bool,
    /// Syncs none of whose databases could be read, each with why.
    pub unreadable: Vec<String>,
    /// Some of those could not be read because no database answered.
    pub unreachable: bool,
}

/// A losing version written back.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub conflict: LoggedConflict,
    /// The database that lost, where the version was written.
    pub database: String,
    pub write: RestoreWrite,
    /// Other databases whose log could not be marked restored (unreachable).
    pub unmarked: Vec<String>,
}

/// Why `dugong conflicts` could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ConflictsError {
    /// A configuration problem (an unknown sync).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The id given is not one a conflict can have.
    #[error(
        "{0:?} is not a conflict id: ids are the hexadecimal digits `dugong conflicts` shows (at least 4 of them)"
    )]
    BadId(String),
    #[error("no conflict with id {id} in the conflict log of {syncs}")]
    UnknownId { id: String, syncs: String },
    #[error("id {id} is ambiguous: it starts {matches}; give more digits")]
    AmbiguousId { id: String, matches: String },
    /// No database of the sync could be read.
    #[error("cannot read the conflict log of {sync}: {why}")]
    Unreadable { sync: String, why: String, unreachable: bool },
    /// The conflict has no losing version to write back.
    #[error("conflict {id} cannot be restored: {why}")]
    NotRestorable { id: String, why: String },
    /// The database that lost the conflict, where a restore writes, cannot be reached.
    #[error("{db} lost conflict {id} and a restore writes there, but it is unreachable: {why}")]
    LoserUnreachable { id: String, db: String, why: String },
    #[error("conflict {id}: {source}")]
    Restore {
        id: String,
        #[source]
        source: RestoreError,
    },
}

impl ConflictsError {
    /// A database could not be reached.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ConflictsError::Replica(e) => e.is_unreachable(),
            ConflictsError::Unreadable { unreachable, .. } => *unreachable,
            ConflictsError::LoserUnreachable { .. } => true,
            ConflictsError::Restore { source: RestoreError::Replica(e), .. } => e.is_unreachable(),
            _ => false,
        }
    }
}

/// A database a conflict log is read from.
enum Log {
    Postgres(Client),
    Sqlite(PathBuf),
}

/// Lists the conflicts `options` asks for, newest first, each sync's merged
/// from the logs of every database that answers.
pub async fn list(config: &Config, options: &ListOptions) -> Result<ConflictList, ConflictsError> {
    let syncs = plan::chosen_syncs(config, options.sync.as_deref())?;
    let mut conflicts = Vec::new();
    let mut unreadable = Vec::new();
    let mut unreachable = false;
    for sync in syncs {
        let filter = LogFilter {
            sync: sync.name.to_string(),
            table: options.table.clone(),
            since: options.since,
            id_prefix: None,
            // One more than shown tells whether more match.
            limit: options.limit.saturating_add(1),
        };
        match read(config, sync, &filter).await {
            Ok((mut found, unanswered)) => {
                conflicts.append(&mut found);
                if let Some(why) = unanswered {
                    unreadable.push(format!("{}: {why}", sync.name));
                    unreachable = true;
                }
            }
            Err(ConflictsError::Unreadable { sync, why, unreachable: down }) => {
                unreadable.push(format!("{sync}: {why}"));
                unreachable |= down;
            }
            Err(e) => return Err(e),
        }
    }
    conflicts.sort_by_key(|c| std::cmp::Reverse(c.at));
    let more = conflicts.len() > options.limit;
    conflicts.truncate(options.limit);
    Ok(ConflictList { conflicts, more, unreadable, unreachable })
}

/// Reads `filter`'s conflicts of `sync` from every database that answers with
/// a current log, each conflict once (its id is the same everywhere). Every
/// database logs the conflicts of the runs it took part in, so one that was
/// down for a while lacks some and the others lack the ones logged while they
/// were: only all of them together are the whole log. Also says which
/// databases did not answer (the list may then be incomplete). No log
/// anywhere (never replicated): no conflicts.
async fn read(
    config: &Config,
    sync: &Sync,
    filter: &LogFilter,
) -> Result<(Vec<LoggedConflict>, Option<String>), ConflictsError> {
    let (logs, tried) = open_logs(config, sync).await;
    let unanswered: Vec<String> =
        tried.iter().filter_map(|(db, s)| s.as_ref().err().map(|e| format!("{db} {e}"))).collect();
    let unanswered = (!unanswered.is_empty()).then(|| unanswered.join("; "));
    if logs.is_empty() {
        if let Some(why) = unanswered {
            return Err(ConflictsError::Unreadable { sync: sync.name.to_string(), why, unreachable: true });
        }
        if let Some((db, _)) = tried.iter().find(|(_, s)| matches!(s, Ok(LogShape::Old))) {
            return Err(ConflictsError::Unreadable {
                sync: sync.name.to_string(),
                why: format!("the conflict log on {db} was made by an earlier Dugong; start `dugong replicate` once to upgrade it"),
                unreachable: false,
            });
        }
        return Ok((Vec::new(), None));
    }
    let reads = logs.into_iter().map(|(db, log)| async move {
        let read = match log {
            Log::Postgres(client) => postgres::conflicts::read_log(&client, filter).await.map_err(|e| describe_pg(&e)),
            Log::Sqlite(path) => {
                let filter = filter.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = sqlite::open::open_read_only(db, &path).map_err(|e| e.to_string())?;
                    sqlite::conflicts::read_log(&conn, &filter).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(format!("reading failed: {e}")))
            }
        };
        read.map_err(|why| ConflictsError::Unreadable {
            sync: sync.name.to_string(),
            why: format!("{db}: {why}"),
            unreachable: false,
        })
    });
    let mut merged: Vec<LoggedConflict> = Vec::new();
    for (i, found) in join_all(reads).await.into_iter().enumerate() {
        for c in found? {
            if c.id.is_none() {
                // Logged by an earlier version, without an id to tell copies
                // apart: from the first log only, as it listed them.
                if i == 0 {
                    merged.push(c);
                }
                continue;
            }
            match merged.iter_mut().find(|m| m.id == c.id) {
                // Restored as soon as any database says so.
                Some(m) => m.restored_at = m.restored_at.max(c.restored_at),
                None => merged.push(c),
            }
        }
    }
    Ok((merged, unanswered))
}

/// Connects to every database of `sync` at once: those whose conflict log is
/// current, and what each one said.
#[allow(clippy::type_complexity)]
async fn open_logs(config: &Config, sync: &Sync) -> (Vec<(DbId, Log)>, Vec<(DbId, Result<LogShape, String>)>) {
    let opened = join_all(sync.databases().into_iter().map(|id| async move { (id, open_one(config, id).await) })).await;
    let mut logs = Vec::new();
    let mut tried = Vec::new();
    for (id, result) in opened {
        match result {
            Ok((LogShape::Current, log)) => {
                logs.push((id, log));
                tried.push((id, Ok(LogShape::Current)));
            }
            Ok((shape, _)) => tried.push((id, Ok(shape))),
            Err(why) => tried.push((id, Err(why))),
        }
    }
    (logs, tried)
}

async fn open_one(config: &Config, id: DbId) -> Result<(LogShape, Log), String> {
    match config.database(id).map(|d| &d.location) {
        Some(Location::Sqlite(path)) => {
            let path = path.clone();
            let shape = tokio::task::spawn_blocking({
                let path = path.clone();
                move || {
                    let conn = sqlite::open::open_read_only(id, &path).map_err(|e| unreachable_text(&e))?;
                    sqlite::conflicts::log_shape(&conn).map_err(|e| e.to_string())
                }
            })
            .await
            .unwrap_or_else(|e| Err(format!("reading failed: {e}")))?;
            Ok((shape, Log::Sqlite(path)))
        }
        _ => {
            let client = connect(config, id).await?;
            let shape = postgres::conflicts::log_shape(&client).await.map_err(|e| describe_pg(&e))?;
            Ok((shape, Log::Postgres(client)))
        }
    }
}

/// A connection to a PostgreSQL database of the configuration, within the budget.
async fn connect(config: &Config, id: DbId) -> Result<Client, String> {
    match tokio::time::timeout(CONNECT_BUDGET, postgres::connect_as(config, id, "dugong conflicts")).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(unreachable_text(&e)),
        Err(_) => Err(format!("is unreachable: no connection within {}s", CONNECT_BUDGET.as_secs())),
    }
}

/// Why a database cannot be used, without the password.
fn unreachable_text(err: &ReplicaError) -> String {
    match err {
        ReplicaError::Unreachable { target, source, .. } => {
            format!("is unreachable ({target}): {}", describe_pg(source))
        }
        other => other.to_string(),
    }
}

/// Writes the losing version of conflict `id` (or a unique prefix of it) back
/// on the database that lost it, refusing when the row changed since the
/// conflict unless `force`.
pub async fn restore(config: &Config, sync: Option<&str>, id: &str, force: bool) -> Result<Restored, ConflictsError> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() < 4 || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConflictsError::BadId(id));
    }
    let syncs = plan::chosen_syncs(config, sync)?;
    let mut found: Vec<(&Sync, LoggedConflict)> = Vec::new();
    for sync in &syncs {
        let filter =
            LogFilter { sync: sync.name.to_string(), id_prefix: Some(id.clone()), limit: 2, ..LogFilter::default() };
        // A conflict one answering database knows is enough to restore it.
        let (logged, _) = read(config, sync, &filter).await?;
        found.extend(logged.into_iter().map(|c| (*sync, c)));
    }
    let mut ids: Vec<&str> = found.iter().filter_map(|(_, c)| c.id.as_deref()).collect();
    ids.dedup();
    let (sync, conflict) = match (found.len(), ids.len()) {
        (0, _) => {
            let names: Vec<String> = syncs.iter().map(|s| s.name.to_string()).collect();
            return Err(ConflictsError::UnknownId { id, syncs: names.join(", ") });
        }
        (_, 1) => found.swap_remove(0),
        _ => return Err(ConflictsError::AmbiguousId { id, matches: ids.join(", ") }),
    };
    let full_id = conflict.id.clone().unwrap_or(id);
    let not_restorable = |why: &str| ConflictsError::NotRestorable { id: full_id.clone(), why: why.into() };
    match conflict.kind {
        _ if !conflict.versions_recorded => {
            return Err(not_restorable("an earlier Dugong logged it without the versions"))
        }
        Some(ConflictKind::DeleteDelete) => {
            return Err(not_restorable("both sides deleted the row; there is no losing version"))
        }
        Some(ConflictKind::ForeignKey) => {
            return Err(not_restorable("a foreign-key conflict names two rows; repair them by hand"))
        }
        _ => {}
    }
    let loser = parse_db(&conflict.loser.database).filter(|db| sync.databases().contains(db)).ok_or_else(|| {
        not_restorable(&format!("{} is not a database of {} any more", conflict.loser.database, sync.name))
    })?;
    let restoring = |source: RestoreError| ConflictsError::Restore { id: full_id.clone(), source };
    let write = match config.database(loser).map(|d| &d.location) {
        Some(Location::Sqlite(path)) => {
            let (path, entry) = (path.clone(), conflict.clone());
            tokio::task::spawn_blocking(move || {
                let conn = sqlite::open::open(loser, &path)?;
                sqlite::restore::restore(&conn, loser, &entry, force)
            })
            .await
            .unwrap_or_else(|e| Err(RestoreError::Replica(ReplicaError::Config(format!("the restore failed: {e}")))))
        }
        _ => {
            let mut client = connect(config, loser).await.map_err(|why| ConflictsError::LoserUnreachable {
                id: full_id.clone(),
                db: loser.to_string(),
                why,
            })?;
            postgres::restore::restore(&mut client, loser, &conflict, force).await
        }
    }
    .map_err(restoring)?;
    let unmarked = mark_elsewhere(config, sync, loser, &full_id).await;
    Ok(Restored { conflict, database: loser.to_string(), write, unmarked })
}

/// Marks the conflict restored in the logs of the sync's other databases;
/// returns those that could not be marked, with why.
async fn mark_elsewhere(config: &Config, sync: &Sync, loser: DbId, id: &str) -> Vec<String> {
    let others = sync.databases().into_iter().filter(|db| *db != loser);
    let marks = others.map(|db| async move {
        let result = match config.database(db).map(|d| &d.location) {
            Some(Location::Sqlite(path)) => {
                let (path, id) = (path.clone(), id.to_string());
                tokio::task::spawn_blocking(move || {
                    let conn = sqlite::open::open(db, &path).map_err(|e| e.to_string())?;
                    sqlite::conflicts::mark_restored(&conn, &id).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            }
            _ => match connect(config, db).await {
                Ok(client) => postgres::conflicts::mark_restored(&client, id).await.map_err(|e| describe_pg(&e)),
                Err(why) => Err(why),
            },
        };
        result.err().map(|why| format!("{db} {why}"))
    });
    join_all(marks).await.into_iter().flatten().collect()
}

/// `db<id>` as the log names databases.
fn parse_db(name: &str) -> Option<DbId> {
    name.strip_prefix("db")?.parse().ok().map(DbId)
}
