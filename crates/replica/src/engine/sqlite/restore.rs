//! Writing a conflict's losing version back in a SQLite file, on the file that
//! lost it, as an ordinary write: outside the replicator's apply transactions
//! the capture triggers log it like any application change, so the replicator
//! ships it to every other file (it is newer than the winner, so it wins).
//!
//! In one `BEGIN IMMEDIATE` transaction: check that the row is still the
//! version that won (unless forced), write the losing version's columns, and
//! mark the conflict restored in this file's log.

use super::capture::NOW_US;
use super::catalog::{self, quoted};
use super::conflicts::{key_match, row_json};
use crate::error::StatementContext;
use crate::plan::Column;
use crate::record::conflict::{LoggedConflict, RestoreError, RestoreWrite};
use dugong_core::{quote_ident, DbId};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::Map;

type Row = Map<String, serde_json::Value>;

/// Writes `c`'s losing version back in `conn`, the file of `db`, which lost.
pub fn restore(conn: &Connection, db: DbId, c: &LoggedConflict, force: bool) -> Result<RestoreWrite, RestoreError> {
    let ctx = || format!("restoring conflict {} on {}", c.id.as_deref().unwrap_or("?"), c.table);
    let bad = |why: String| RestoreError::BadVersion { db, table: c.table.clone(), why };
    let table = catalog::read(conn, db)?
        .into_iter()
        .find(|row| row.name == c.table_name && row.key.is_some())
        .ok_or_else(|| RestoreError::MissingTable { db, table: c.table.clone() })?;
    let key_names = table.key.as_ref().map(|(_, k)| k.clone()).unwrap_or_default();
    let key: Vec<Column> =
        key_names.iter().filter_map(|k| table.columns.iter().find(|col| &col.name == k).cloned()).collect();
    let winner = parse(&c.winner.row).map_err(&bad)?;
    let loser = parse(&c.loser.row).map_err(&bad)?;
    let some_row = loser.as_ref().or(winner.as_ref()).ok_or_else(|| bad("both sides had deleted the row".into()))?;
    let key_values: Vec<Value> = key
        .iter()
        .map(|col| {
            some_row.get(&col.name).map(value).ok_or_else(|| bad(format!("no value for key column {}", col.name)))
        })
        .collect::<Result<_, _>>()?;

    conn.execute_batch("BEGIN IMMEDIATE").on_db(db, ctx)?;
    let result = (|| {
        let read =
            format!("SELECT {} FROM {} WHERE {}", row_json(&table.columns), quoted(&table.name), key_match(&key));
        let current: Option<String> =
            conn.query_row(&read, params_from_iter(key_values.iter()), |r| r.get(0)).optional().on_db(db, ctx)?;
        let current = match current {
            Some(text) => Some(parse_object(&text).map_err(&bad)?),
            None => None,
        };
        if current != winner && !force {
            return Err(RestoreError::changed(db, c, current == loser));
        }
        let n = key.len();
        let write = match (&loser, &current) {
            (None, _) => {
                let sql = format!("DELETE FROM {} WHERE {}", quoted(&table.name), key_match(&key));
                conn.execute(&sql, params_from_iter(key_values.iter())).map_err(|e| bad(e.to_string()))?;
                RestoreWrite::Deleted
            }
            (Some(row), found) => {
                let columns: Vec<&Column> = table.columns.iter().filter(|col| row.contains_key(&col.name)).collect();
                let values: Vec<Value> = columns.iter().map(|col| value(&row[&col.name])).collect();
                if found.is_some() {
                    let sets: Vec<String> = columns
                        .iter()
                        .enumerate()
                        .map(|(i, col)| format!("{} = ?{}", quote_ident(&col.name), n + i + 1))
                        .collect();
                    let sql =
                        format!("UPDATE {} SET {} WHERE {}", quoted(&table.name), sets.join(", "), key_match(&key));
                    let params = key_values.iter().chain(values.iter());
                    conn.execute(&sql, params_from_iter(params)).map_err(|e| bad(e.to_string()))?;
                    RestoreWrite::Updated
                } else {
                    let names: Vec<String> = columns.iter().map(|col| quote_ident(&col.name)).collect();
                    let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
                    let sql = format!(
                        "INSERT INTO {} ({}) VALUES ({})",
                        quoted(&table.name),
                        names.join(", "),
                        marks.join(", ")
                    );
                    conn.execute(&sql, params_from_iter(values.iter())).map_err(|e| bad(e.to_string()))?;
                    RestoreWrite::Inserted
                }
            }
        };
        conn.execute(
            &format!(
                "UPDATE dugong_conflict_log SET restored_at = {NOW_US} WHERE conflict_id = ?1 AND restored_at IS NULL"
            ),
            [&c.id],
        )
        .on_db(db, ctx)?;
        Ok(write)
    })();
    match &result {
        Ok(_) => conn.execute_batch("COMMIT").on_db(db, ctx)?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    result
}

/// A logged version as a JSON object; `None` for no row.
fn parse(row: &serde_json::value::RawValue) -> Result<Option<Row>, String> {
    match row.get().trim() {
        "null" => Ok(None),
        text => parse_object(text).map(Some),
    }
}

fn parse_object(text: &str) -> Result<Row, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("the version is not a JSON object".into()),
        Err(e) => Err(format!("the version is not JSON: {e}")),
    }
}

/// A JSON value of a version as the SQLite value it was: integers and reals
/// as numbers, text as strings, blobs as `{"blob": "<hex>"}`.
fn value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Object(map) if map.len() == 1 => {
            match map.get("blob").and_then(|h| h.as_str()).and_then(unhex) {
                Some(bytes) => Value::Blob(bytes),
                None => Value::Text(v.to_string()),
            }
        }
        other => Value::Text(other.to_string()),
    }
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_turn_back_into_the_values_they_were() {
        let row = parse_object(r#"{"i": 7, "r": 1.5, "t": "x", "b": {"blob": "00ff"}, "n": null}"#).unwrap();
        assert_eq!(value(&row["i"]), Value::Integer(7));
        assert_eq!(value(&row["r"]), Value::Real(1.5));
        assert_eq!(value(&row["t"]), Value::Text("x".into()));
        assert_eq!(value(&row["b"]), Value::Blob(vec![0, 255]));
        assert_eq!(value(&row["n"]), Value::Null);
        assert_eq!(unhex("0g"), None);
    }
}
