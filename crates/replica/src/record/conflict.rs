//! The conflict log's vocabulary: what kind of conflict a row had, both of its
//! versions, who won and why — as a run records it ([`RunConflict`], written
//! by the engines in the run's transactions) and as `dugong conflicts` reads
//! it back ([`LoggedConflict`]).
//!
//! A version is the row as JSON (PostgreSQL's `to_jsonb`, SQLite's
//! `json_object` over the columns, blobs as `{"blob": "<hex>"}`), or nothing
//! when the row was deleted there (JSON `null` in the log). A conflict's id is
//! derived from its content, so every database of the sync logs it under the
//! same id and a run repeated after a crash logs it only once.

use crate::apply::TableConflict;
use crate::plan::{DbOrder, SyncPlan};
use crate::read::{CommitTime, TextKey};
use crate::resolve::ConflictRecord;
use chrono::{DateTime, Utc};
use dugong_core::{ConflictStrategy, DbId, SyncName, TableName};
use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::value::RawValue;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::time::Duration;

/// A row as JSON text, as one database held it; `None`: no row (deleted).
pub type RowVersion = Option<Box<RawValue>>;

/// What the two sides of a conflict did to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConflictKind {
    /// Both sides changed a row both had.
    #[serde(rename = "update/update")]
    UpdateUpdate,
    /// Both sides inserted the same new key.
    #[serde(rename = "insert/insert")]
    InsertInsert,
    /// One side changed the row, the other deleted it (or truncated the table).
    #[serde(rename = "update/delete")]
    UpdateDelete,
    /// Both sides deleted the row: nothing differs, but the key was contested.
    #[serde(rename = "delete/delete")]
    DeleteDelete,
    /// A row refers to a parent row that the other side deleted.
    #[serde(rename = "foreign key")]
    ForeignKey,
}

impl ConflictKind {
    /// Every kind, in the order operators read them.
    pub const ALL: [ConflictKind; 5] = [
        ConflictKind::UpdateUpdate,
        ConflictKind::InsertInsert,
        ConflictKind::UpdateDelete,
        ConflictKind::DeleteDelete,
        ConflictKind::ForeignKey,
    ];

    /// The kind as the log stores it and operators read it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::UpdateUpdate => "update/update",
            ConflictKind::InsertInsert => "insert/insert",
            ConflictKind::UpdateDelete => "update/delete",
            ConflictKind::DeleteDelete => "delete/delete",
            ConflictKind::ForeignKey => "foreign key",
        }
    }

    /// The kind the log stored as `text`.
    pub fn parse(text: &str) -> Option<ConflictKind> {
        ConflictKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kind of a row conflict, from what each side holds now and whether
    /// both only inserted the key.
    pub fn of(both_inserted: bool, winner: &RowVersion, loser: &RowVersion) -> ConflictKind {
        match (winner.is_some(), loser.is_some()) {
            (false, false) => ConflictKind::DeleteDelete,
            (true, false) | (false, true) => ConflictKind::UpdateDelete,
            (true, true) if both_inserted => ConflictKind::InsertInsert,
            (true, true) => ConflictKind::UpdateUpdate,
        }
    }
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A conflict of this run, as every database's conflict log records it.
#[derive(Debug, Clone)]
pub struct RunConflict {
    /// Derived from the content ([`conflict_id`]): the same on every database.
    pub id: String,
    pub table: TableName,
    pub key: TextKey,
    pub kind: ConflictKind,
    pub winner: DbId,
    pub winner_time: CommitTime,
    /// The winner's row, which every database now holds.
    pub winner_row: RowVersion,
    pub loser: DbId,
    pub loser_time: CommitTime,
    /// The loser's row, which the run overwrote.
    pub loser_row: RowVersion,
    /// Why the winner won.
    pub reason: String,
}

impl RunConflict {
    /// The conflict `c` of `plan` with its key as text and both versions.
    pub fn new<K>(
        plan: &SyncPlan,
        c: &TableConflict<K>,
        key: TextKey,
        winner_row: RowVersion,
        loser_row: RowVersion,
    ) -> RunConflict {
        let table = plan.tables[c.table].name.clone();
        let r = &c.record;
        let kind = ConflictKind::of(c.both_inserted, &winner_row, &loser_row);
        let reason = why_won(&plan.sync.conflict_strategy, &plan.order, r);
        let mut conflict = RunConflict {
            id: String::new(),
            table,
            key,
            kind,
            winner: r.winner,
            winner_time: r.winner_time,
            winner_row,
            loser: r.loser,
            loser_time: r.loser_time,
            loser_row,
            reason,
        };
        conflict.id = conflict_id(plan.name(), &conflict);
        conflict
    }
}

/// A row whose foreign key points at a parent row that no longer exists, as
/// found on the sync's databases (the first, in the sync's order, names it).
#[derive(Debug, Clone)]
pub struct Orphan {
    pub db: DbId,
    pub table: TableName,
    pub key: TextKey,
    /// The child row, as JSON.
    pub row: RowVersion,
    pub parent: TableName,
    /// The parent key it refers to, as text.
    pub parent_key: TextKey,
}

impl Orphan {
    /// The orphan as a conflict of kind foreign key: the child's row is the
    /// version kept, the parent's (gone) the other. Its id is stable from one
    /// look to the next, so it is logged once.
    pub fn conflict(&self, sync: &SyncName) -> RunConflict {
        let mut c = RunConflict {
            id: String::new(),
            table: self.table.clone(),
            key: self.key.clone(),
            kind: ConflictKind::ForeignKey,
            winner: self.db,
            winner_time: None,
            winner_row: self.row.clone(),
            loser: self.db,
            loser_time: None,
            loser_row: None,
            reason: format!(
                "its row refers to {} ({}), which no longer exists: the parent was deleted on one site while this row was written on another; restore the parent or delete this row",
                self.parent,
                self.parent_key.join(", ")
            ),
        };
        c.id = conflict_id(sync, &c);
        c
    }
}

/// The rows a run must read for its conflicts' versions: per (source, index
/// of the table in the plan), every key that source won or lost, once.
pub fn versions_wanted<K: Eq + Hash>(conflicts: &[TableConflict<K>]) -> BTreeMap<(DbId, usize), Vec<&K>> {
    let mut seen: HashSet<(DbId, usize, &K), foldhash::fast::RandomState> = HashSet::default();
    let mut wanted: BTreeMap<(DbId, usize), Vec<&K>> = BTreeMap::new();
    for c in conflicts {
        for db in [c.record.winner, c.record.loser] {
            if seen.insert((db, c.table, &c.record.key)) {
                wanted.entry((db, c.table)).or_default().push(&c.record.key);
            }
        }
    }
    wanted
}

/// The id of a conflict: 16 hex digits of an MD5 over everything it records
/// but the time it was logged. Equal on every database of the sync, so an
/// operator can take an id from any of them.
pub fn conflict_id(sync: &SyncName, c: &RunConflict) -> String {
    let raw = |v: &RowVersion| v.as_ref().map(|r| r.get().to_string());
    let content = serde_json::json!([
        sync.as_str(),
        c.table.schema,
        c.table.name,
        c.key,
        c.kind.as_str(),
        c.winner.to_string(),
        c.winner_time,
        raw(&c.winner_row),
        c.loser.to_string(),
        c.loser_time,
        raw(&c.loser_row),
    ]);
    let digest = Md5::digest(content.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Why the winner of `c` won, as the log says it. Follows the decision of
/// `resolve`: a priority list first, then the later commit, then the order
/// of the databases in the configuration.
pub fn why_won<K>(strategy: &ConflictStrategy, order: &DbOrder, c: &ConflictRecord<K>) -> String {
    let decided = match strategy {
        ConflictStrategy::Priority(list) => {
            let at = |db: DbId| list.iter().position(|d| *d == db);
            match (at(c.winner), at(c.loser)) {
                (Some(w), Some(l)) if w != l => Some(format!("priority list: {} before {}", c.winner, c.loser)),
                (Some(_), None) => Some(format!("priority list: {} is listed, {} is not", c.winner, c.loser)),
                _ => None,
            }
        }
        _ => None,
    };
    let decided = decided.unwrap_or_else(|| match (c.winner_time, c.loser_time) {
        (Some(w), Some(l)) if w.cmp(&l) == Ordering::Greater => "later commit".to_string(),
        (Some(w), Some(l)) if w == l => format!("same commit time; {} comes first in the configuration", c.winner),
        (None, None) => format!("commit times unknown; {} comes first in the configuration", c.winner),
        _ if order.rank(c.winner) < order.rank(c.loser) => {
            format!("commit time unknown on one side; {} comes first in the configuration", c.winner)
        }
        _ => "later commit".to_string(),
    });
    if c.by_truncate {
        format!("{} truncated the table: {decided}", c.winner)
    } else {
        decided
    }
}

/// Which conflicts `dugong conflicts` reads from a database's log.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub sync: String,
    /// `schema.name`, or a bare name in any schema.
    pub table: Option<String>,
    /// Only conflicts logged within this long before the database's `now()`.
    pub since: Option<Duration>,
    /// Only the conflict with this id, or ids starting with it.
    pub id_prefix: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl LogFilter {
    /// The table filter split into (schema, name); no schema: any.
    pub fn table_parts(&self) -> Option<(Option<&str>, &str)> {
        let t = self.table.as_deref()?;
        Some(match t.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, t),
        })
    }
}

/// What a database's conflict log can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogShape {
    /// Dugong was never installed there.
    Missing,
    /// Made by an earlier Dugong: no ids or versions until a replicator
    /// starts and upgrades it.
    Old,
    Current,
}

/// One side of a logged conflict.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// `db<id>`.
    pub database: String,
    /// When its change committed, when known.
    pub committed: Option<DateTime<Utc>>,
    /// Its version of the row; JSON `null` when it had deleted the row (or,
    /// with `versions_recorded` false, when an earlier Dugong logged the conflict without versions).
    pub row: Box<RawValue>,
}

/// A conflict as the log holds it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedConflict {
    /// `None` for conflicts logged before conflicts had ids (and versions).
    pub id: Option<String>,
    /// When it was logged, by the database's clock.
    pub at: DateTime<Utc>,
    pub sync: String,
    /// `schema.name` (SQLite: `main.name`).
    pub table: String,
    /// The table, for SQL.
    #[serde(skip)]
    pub table_name: TableName,
    pub key: TextKey,
    /// `None` for conflicts logged before kinds were.
    pub kind: Option<ConflictKind>,
    pub winner: Side,
    pub loser: Side,
    /// Both versions were recorded (conflicts logged by earlier versions
    /// carry neither).
    pub versions_recorded: bool,
    /// Why the winner won.
    pub reason: String,
    /// When `dugong conflicts restore` wrote the loser's version back.
    pub restored_at: Option<DateTime<Utc>>,
}

/// How a restore wrote a losing version back, as a new change on the site
/// that lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreWrite {
    /// The row was gone there: the losing version was inserted.
    Inserted,
    /// The row was replaced by the losing version.
    Updated,
    /// The losing side had deleted the row: it was deleted again.
    Deleted,
}

/// Why a losing version was not written back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The row on the losing site is no longer the version that won: someone
    /// changed it since, and writing the losing version would lose that.
    #[error("{table} {key} changed on {db} since the conflict{already}; nothing was written (--force overwrites it with the losing version anyway)")]
    ChangedSince { db: DbId, table: String, key: String, already: &'static str },
    /// The conflict's table is not on the losing site (dropped or renamed).
    #[error("table {table} does not exist on {db} (or has no primary key any more); nothing was written")]
    MissingTable { db: DbId, table: String },
    /// A version in the log could not be used as a row.
    #[error("{db}: the conflict log's version of {table} cannot be written back: {why}")]
    BadVersion { db: DbId, table: String, why: String },
    #[error(transparent)]
    Replica(#[from] crate::ReplicaError),
}

impl RestoreError {
    /// The row changed since; `holds_loser`: it already holds the losing
    /// version (restored before, or written by hand).
    pub fn changed(db: DbId, c: &LoggedConflict, holds_loser: bool) -> RestoreError {
        RestoreError::ChangedSince {
            db,
            table: c.table.clone(),
            key: format!("({})", c.key.join(", ")),
            already: if holds_loser { " (it already holds the losing version)" } else { "" },
        }
    }
}

/// A JSON `null`, for sides without a version.
pub fn json_null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// A version read back from a log: JSON text, `None` or `"null"` for no row.
pub fn version_from_text(text: Option<String>) -> Result<RowVersion, serde_json::Error> {
    match text {
        None => Ok(None),
        Some(t) if t.trim() == "null" => Ok(None),
        Some(t) => RawValue::from_string(t).map(Some),
    }
}

/// A time in microseconds since the epoch as UTC.
pub fn utc(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(winner_time: CommitTime, loser_time: CommitTime) -> ConflictRecord<TextKey> {
        ConflictRecord {
            key: vec!["1".into()],
            winner: DbId(1),
            winner_time,
            loser: DbId(0),
            loser_time,
            by_truncate: false,
        }
    }

    fn row(json: &str) -> RowVersion {
        Some(RawValue::from_string(json.into()).unwrap())
    }

    #[test]
    fn kinds_follow_what_each_side_holds() {
        assert_eq!(ConflictKind::of(false, &row("{}"), &row("{}")), ConflictKind::UpdateUpdate);
        assert_eq!(ConflictKind::of(true, &row("{}"), &row("{}")), ConflictKind::InsertInsert);
        assert_eq!(ConflictKind::of(false, &None, &row("{}")), ConflictKind::UpdateDelete);
        assert_eq!(ConflictKind::of(true, &row("{}"), &None), ConflictKind::UpdateDelete);
        assert_eq!(ConflictKind::of(false, &None, &None), ConflictKind::DeleteDelete);
        for kind in ConflictKind::ALL {
            assert_eq!(ConflictKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
    }

    #[test]
    fn reasons_say_which_rule_decided() {
        let order = DbOrder::new(vec![DbId(0), DbId(1)]);
        let latest = ConflictStrategy::Latest;
        assert_eq!(why_won(&latest, &order, &record(Some(20), Some(10))), "later commit");
        let mut tie = record(Some(10), Some(10));
        (tie.winner, tie.loser) = (DbId(0), DbId(1));
        assert_eq!(why_won(&latest, &order, &tie), "same commit time; db0 comes first in the configuration");
        tie.winner_time = None;
        tie.loser_time = None;
        assert_eq!(why_won(&latest, &order, &tie), "commit times unknown; db0 comes first in the configuration");
        let priority = ConflictStrategy::Priority(vec![DbId(1), DbId(0)]);
        assert_eq!(why_won(&priority, &order, &record(Some(5), Some(10))), "priority list: db1 before db0");
        let mut truncated = record(Some(20), Some(10));
        truncated.by_truncate = true;
        assert_eq!(why_won(&latest, &order, &truncated), "db1 truncated the table: later commit");
    }

    #[test]
    fn versions_read_back_tell_a_deleted_row_from_a_row() {
        assert!(version_from_text(None).unwrap().is_none());
        assert!(version_from_text(Some("null".into())).unwrap().is_none());
        assert_eq!(version_from_text(Some(r#"{"id": 1}"#.into())).unwrap().unwrap().get(), r#"{"id": 1}"#);
        assert!(version_from_text(Some("{".into())).is_err());
    }
}
