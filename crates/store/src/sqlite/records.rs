//! Apps, flows, settings and contexts in SQLite: the same generic
//! implementation as on PostgreSQL, with every column stored as text (times as
//! integers).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};

use super::{audit, SqliteStore};
use crate::audit::{Action, Actor, NewAudit};
use crate::error::{from_sqlite, StoreError};
use crate::model::{Expect, Input, Kind, ListQuery, Micros, Page, Record, Table};

fn select_list(table: &Table) -> String {
    let mut cols = vec![table.key.name];
    cols.extend(table.fields.iter().map(|c| c.name));
    cols.push("version");
    cols.push("updated_at");
    cols.join(", ")
}

fn to_record(kind: Kind, row: &Row<'_>) -> Result<Record, StoreError> {
    let n = kind.table().fields.len();
    let read = |row: &Row<'_>| -> rusqlite::Result<(String, Vec<String>, i64, i64)> {
        let fields = (1..=n).map(|i| row.get(i)).collect::<Result<Vec<String>, _>>()?;
        Ok((row.get(0)?, fields, row.get(n + 1)?, row.get(n + 2)?))
    };
    let (key, fields, version, updated) =
        read(row).map_err(|e| from_sqlite(&format!("reading {}", kind.as_str()), &e))?;
    Record::from_row(kind, key, fields, version, Micros(updated))
}

/// Runs a query returning records.
fn query(conn: &Connection, kind: Kind, sql: &str, params: Vec<Value>) -> Result<Vec<Record>, StoreError> {
    let ctx = format!("reading {}", kind.as_str());
    let mut stmt = conn.prepare_cached(sql).map_err(|e| from_sqlite(&ctx, &e))?;
    let mut rows = stmt.query(params_from_iter(params)).map_err(|e| from_sqlite(&ctx, &e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| from_sqlite(&ctx, &e))? {
        out.push(to_record(kind, row)?);
    }
    Ok(out)
}

fn current_version(conn: &Connection, kind: Kind, key: &str) -> Result<i64, StoreError> {
    let t = kind.table();
    let sql = format!("SELECT version FROM {} WHERE {} = ?1", t.name, t.key.name);
    conn.query_row(&sql, [key], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(|e| from_sqlite(&format!("reading {}", kind.as_str()), &e))
}

/// The error for a write whose expectation failed (see the PostgreSQL twin).
fn conflict(conn: &Connection, kind: Kind, key: &str, expected: i64) -> StoreError {
    match current_version(conn, kind, key) {
        Ok(0) if expected > 0 => StoreError::NotFound { kind: kind.as_str(), key: key.to_string() },
        Ok(current) => StoreError::Conflict { kind: kind.as_str(), key: key.to_string(), expected, current },
        Err(e) => e,
    }
}

fn write_error(kind: Kind, err: &rusqlite::Error) -> StoreError {
    if kind == Kind::Flow
        && matches!(err, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
    {
        return StoreError::invalid("app_id", "no app with this id");
    }
    from_sqlite(&format!("writing {}", kind.as_str()), err)
}

impl SqliteStore {
    pub(crate) async fn get(&self, kind: Kind, key: &str) -> Result<Option<Record>, StoreError> {
        let t = kind.table();
        let sql = format!("SELECT {} FROM {} WHERE {} = ?1", select_list(t), t.name, t.key.name);
        let key = key.to_string();
        self.run(move |c, _| Ok(query(c, kind, &sql, vec![Value::Text(key)])?.pop())).await
    }

    pub(crate) async fn get_many(&self, kind: Kind, keys: &[String]) -> Result<Vec<Record>, StoreError> {
        let t = kind.table();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} IN (SELECT value FROM json_each(?1))",
            select_list(t),
            t.name,
            t.key.name
        );
        let keys = serde_json::to_string(keys).map_err(|e| StoreError::invalid("keys", e.to_string()))?;
        self.run(move |c, _| query(c, kind, &sql, vec![Value::Text(keys)])).await
    }

    pub(crate) async fn list(&self, kind: Kind, q: &ListQuery) -> Result<Page<Record>, StoreError> {
        let t = kind.table();
        let mut sql = format!("SELECT {} FROM {} WHERE (?1 IS NULL OR {} > ?1)", select_list(t), t.name, t.key.name);
        let fetch = i64::from(q.limit) + 1;
        let mut params = vec![opt(&q.after), Value::Integer(fetch)];
        if kind == Kind::Flow {
            sql.push_str(" AND (?3 IS NULL OR app_id = ?3)");
            params.push(opt(&q.app_id));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT ?2", t.key.name));
        let mut items = self.run(move |c, _| query(c, kind, &sql, params)).await?;
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|r| r.key().to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Writes a record; with `who`, its audit entry in the same transaction.
    pub(crate) async fn put(&self, input: &Input, expect: Expect, who: Option<&Actor>) -> Result<Record, StoreError> {
        let kind = input.kind;
        let t = kind.table();
        let names: Vec<&str> = t.fields.iter().map(|c| c.name).collect();
        let n = names.len();
        let (key, select) = (t.key.name, select_list(t));
        let stamp = n + 2; // ?1 key, ?2.. fields, then the time
        let sql = match expect {
            Expect::Any | Expect::Absent => {
                let marks: Vec<String> = (2..n + 2).map(|i| format!("?{i}")).collect();
                let on_conflict = if expect == Expect::Any {
                    let set: Vec<String> = names.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                    format!("DO UPDATE SET {}, version = version + 1, updated_at = excluded.updated_at", set.join(", "))
                } else {
                    "DO NOTHING".into()
                };
                format!(
                    "INSERT INTO {} ({key}, {}, version, updated_at) VALUES (?1, {}, 1, ?{stamp})
                     ON CONFLICT ({key}) {on_conflict} RETURNING {select}",
                    t.name,
                    names.join(", "),
                    marks.join(", ")
                )
            }
            Expect::Version(_) => {
                let set: Vec<String> = names.iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 2)).collect();
                format!(
                    "UPDATE {} SET {}, version = version + 1, updated_at = ?{stamp}
                     WHERE {key} = ?1 AND version = ?{} RETURNING {select}",
                    t.name,
                    set.join(", "),
                    stamp + 1
                )
            }
        };
        let expected = expect.number();
        let mut params = vec![Value::Text(input.key.clone())];
        params.extend(input.fields.iter().cloned().map(Value::Text));
        params.push(Value::Integer(Micros::now().0));
        if let Expect::Version(v) = expect {
            params.push(Value::Integer(v));
        }
        let key_text = input.key.clone();
        let who = who.cloned();
        self.run(move |c, site| {
            audited(c, site, who, |c| {
                let found = {
                    let mut stmt = c.prepare_cached(&sql).map_err(|e| write_error(kind, &e))?;
                    let mut rows = stmt.query(params_from_iter(params)).map_err(|e| write_error(kind, &e))?;
                    match rows.next().map_err(|e| write_error(kind, &e))? {
                        Some(row) => Some(to_record(kind, row)?),
                        None => None,
                    }
                };
                let record = found.ok_or_else(|| conflict(c, kind, &key_text, expected))?;
                let version = record.version();
                let action = if version == 1 { Action::Create } else { Action::Update };
                Ok((record, entry(kind, &key_text, action, version)))
            })
        })
        .await
    }

    /// Deletes a record; with `who`, its audit entry in the same transaction.
    pub(crate) async fn delete(
        &self,
        kind: Kind,
        key: &str,
        expect: Expect,
        who: Option<&Actor>,
    ) -> Result<i64, StoreError> {
        let t = kind.table();
        let sql = format!(
            "DELETE FROM {} WHERE {} = ?1 AND (?2 IS NULL OR version = ?2) RETURNING version",
            t.name, t.key.name
        );
        let expected = match expect {
            Expect::Version(v) => Value::Integer(v),
            _ => Value::Null,
        };
        let key = key.to_string();
        let who = who.cloned();
        self.run(move |c, site| {
            audited(c, site, who, |c| {
                let deleted: Option<i64> = c
                    .query_row(&sql, params_from_iter([Value::Text(key.clone()), expected.clone()]), |r| r.get(0))
                    .optional()
                    .map_err(|e| write_error(kind, &e))?;
                let version = match (deleted, expected) {
                    (Some(v), _) => v,
                    (None, Value::Integer(v)) => return Err(conflict(c, kind, &key, v)),
                    (None, _) => return Err(StoreError::NotFound { kind: kind.as_str(), key: key.clone() }),
                };
                Ok((version, entry(kind, &key, Action::Delete, version)))
            })
        })
        .await
    }
}

/// The audit entry of a change by an actor still to be named.
struct Entry {
    action: Action,
    resource: &'static str,
    key: String,
    version: i64,
}

fn entry(kind: Kind, key: &str, action: Action, version: i64) -> Entry {
    Entry { action, resource: kind.as_str(), key: key.to_string(), version }
}

/// Runs `write`; with `who`, inside an immediate transaction that also
/// records the write's audit entry, so both commit or neither does.
fn audited<T>(
    c: &mut Connection,
    site: &str,
    who: Option<Actor>,
    write: impl FnOnce(&Connection) -> Result<(T, Entry), StoreError>,
) -> Result<T, StoreError> {
    let Some(who) = who else {
        return write(c).map(|(out, _)| out);
    };
    let ctx = "writing with its audit entry";
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| from_sqlite(ctx, &e))?;
    let (out, e) = write(&tx)?;
    let audit = NewAudit {
        actor: who,
        action: e.action,
        resource: e.resource.to_string(),
        key: e.key,
        version: Some(e.version),
        detail: String::new(),
    };
    audit::insert(&tx, site, &audit)?;
    tx.commit().map_err(|e| from_sqlite(ctx, &e))?;
    Ok(out)
}

fn opt(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::Text)
}
