//! The replicator's conflict log as this site's database holds it
//! (`dugong.conflict_log` on PostgreSQL, `dugong_conflict_log` in SQLite):
//! read for the console, which shows both versions of each conflicted row
//! and restores a losing version of an app, flow, setting or context as a new
//! change. Every database of a sync holds the same log under the same ids
//! (crates/replica/src/record/conflict.rs writes it), so any site's console
//! shows every conflict.

use crate::error::StoreError;
use crate::model::{ColumnType, Kind, Micros, Record};

/// Which conflicts a read returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConflictQuery {
    /// Only conflicts of this record.
    pub record: Option<(Kind, String)>,
    /// Only conflicts logged before this one (a previous page's `next`).
    pub before: Option<ConflictCursor>,
    pub limit: u32,
}

/// Where a page of the conflict log ended: the last conflict's time and its
/// row number in this database's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictCursor {
    pub at: Micros,
    pub row: i64,
}

impl ConflictCursor {
    pub fn token(&self) -> String {
        format!("{}.{}", self.at.0, self.row)
    }

    pub fn parse(field: &str, token: &str) -> Result<ConflictCursor, StoreError> {
        let bad = || StoreError::invalid(field, "not a page token of the conflict log");
        let (at, row) = token.split_once('.').ok_or_else(bad)?;
        Ok(ConflictCursor { at: Micros(at.parse().map_err(|_| bad())?), row: row.parse().map_err(|_| bad())? })
    }
}

/// One side of a conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictSide {
    /// `db<id>`, as the replicator's configuration numbers the databases.
    pub database: String,
    /// When its change committed, when known.
    pub committed: Option<Micros>,
    /// Its version of the row (`None`: it had deleted the row, or an
    /// earlier replicator logged no versions).
    pub row: Option<serde_json::Value>,
}

/// A conflict as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedConflict {
    /// The id every database logs it under (`dugong conflicts restore ID`);
    /// empty for conflicts an earlier replicator logged without one.
    pub id: String,
    /// This database's row number of it (for paging).
    pub row: i64,
    /// When it was logged, by the database's clock.
    pub at: Micros,
    pub sync: String,
    /// The table as the log names it (`dugong_app.apps`, `apps`).
    pub table: String,
    /// The kind of record, when the table is one of the server's.
    pub kind: Option<Kind>,
    /// The primary key's values, as text.
    pub key: Vec<String>,
    /// `update/update`, `insert/insert`, `update/delete`, `delete/delete`,
    /// `foreign key` (empty when not logged).
    pub conflict: String,
    pub winner: ConflictSide,
    pub loser: ConflictSide,
    /// Why the winner won.
    pub reason: String,
    pub restored_at: Option<Micros>,
    /// Both versions were logged.
    pub versions: bool,
}

impl LoggedConflict {
    /// The record the log's `row` holds, for the server's own kinds: a
    /// losing version can be shown and restored as a record. `sqlite`: the
    /// row came from SQLite (whose JSON columns are text).
    pub(crate) fn record_of(kind: Kind, row: &serde_json::Value, sqlite: bool) -> Result<Record, StoreError> {
        let t = kind.table();
        let bad = |why: &str| StoreError::Corrupt { kind: kind.as_str(), key: String::new(), reason: why.to_string() };
        let object = row.as_object().ok_or_else(|| bad("a logged version is not a JSON object"))?;
        let text = |name: &str| -> Result<String, StoreError> {
            match object.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                _ => Err(bad(&format!("a logged version has no {name}"))),
            }
        };
        let key = text(t.key.name)?;
        let fields = t
            .fields
            .iter()
            .map(|c| match (c.ty, sqlite) {
                (ColumnType::Json, false) => object
                    .get(c.name)
                    .map(serde_json::Value::to_string)
                    .ok_or_else(|| bad(&format!("a logged version has no {}", c.name))),
                _ => text(c.name),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let version = object.get("version").and_then(serde_json::Value::as_i64).unwrap_or(0);
        let updated_at = match object.get("updated_at") {
            // SQLite: microseconds; PostgreSQL: a timestamp as JSON text.
            Some(serde_json::Value::Number(n)) => Micros(n.as_i64().unwrap_or(0)),
            Some(serde_json::Value::String(s)) => pg_time(s).unwrap_or(Micros(0)),
            _ => Micros(0),
        };
        Record::from_row(kind, key, fields, version, updated_at)
    }
}

/// A timestamptz as `to_jsonb` writes it (`2024-05-01T12:00:00.123456+02:00`).
fn pg_time(text: &str) -> Option<Micros> {
    let date_end = text.find('T')?;
    let sign_at = text[date_end..].rfind(['+', '-'])? + date_end;
    let (local, offset) = text.split_at(sign_at);
    let (sign, hhmm) = offset.split_at(1);
    let mut parts = hhmm.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    let at = Micros::from(humantime::parse_rfc3339_weak(&format!("{local}Z")).ok()?);
    let shift = (hours * 60 + minutes) * 60_000_000;
    Some(Micros(if sign == "+" { at.0 - shift } else { at.0 + shift }))
}

/// The kind of record a logged table holds: the server's own tables in
/// `dugong_app` (PostgreSQL) or unqualified (SQLite).
pub(crate) fn kind_of(schema: Option<&str>, table: &str) -> Option<Kind> {
    match schema {
        Some("dugong_app") | None | Some("main") => Kind::parse(table),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_versions_read_as_records_on_both_engines() {
        let pg = serde_json::json!({"key": "ui", "value": {"dark": true}, "version": 3,
                                    "updated_at": "2024-05-01T12:00:00.5+00:00"});
        let Record::Setting(s) = LoggedConflict::record_of(Kind::Setting, &pg, false).unwrap() else { panic!() };
        assert_eq!((s.value, s.version), (serde_json::json!({"dark": true}), 3));
        assert_eq!(s.updated_at, Micros(1_714_564_800_500_000));
        let lite = serde_json::json!({"key": "ui", "value": "{\"dark\":true}", "version": 3, "updated_at": 7});
        let Record::Setting(s) = LoggedConflict::record_of(Kind::Setting, &lite, true).unwrap() else { panic!() };
        assert_eq!((s.value, s.updated_at), (serde_json::json!({"dark": true}), Micros(7)));
        assert!(LoggedConflict::record_of(Kind::App, &serde_json::json!({"id": "x"}), true).is_err());
        assert_eq!(pg_time("2024-05-01T14:00:00.5+02:00"), Some(Micros(1_714_564_800_500_000)));
        assert_eq!(kind_of(Some("dugong_app"), "flows"), Some(Kind::Flow));
        assert_eq!(kind_of(Some("public"), "flows"), None);
    }

    #[test]
    fn page_tokens_round_trip() {
        let c = ConflictCursor { at: Micros(17), row: 4 };
        assert_eq!(ConflictCursor::parse("before", &c.token()).unwrap(), c);
        assert!(ConflictCursor::parse("before", "x").is_err());
    }
}
