//! Apps, flows, settings and contexts in SQLite: the same generic
//! implementation as on PostgreSQL, with every column stored as text (times as
//! integers).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};

use super::{audit, history, SqliteStore};
use crate::audit::{Action, Actor, NewAudit};
use crate::error::{from_sqlite, StoreError};
use crate::model::{Expect, Input, Kind, ListQuery, Micros, Page, Record, Table};

pub(super) fn select_list(table: &Table) -> String {
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
pub(super) fn query(conn: &Connection, kind: Kind, sql: &str, params: Vec<Value>) -> Result<Vec<Record>, StoreError> {
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

/// Fails with [`StoreError::Duplicate`] when another app (or another flow of
/// app `scope`) is named `title`, ignoring case; a record keeping the name
/// it has passes. Inside the write's immediate transaction, so no other
/// writer can take the name meanwhile.
fn name_free(c: &Connection, kind: Kind, key: &str, title: &str, scope: Option<&str>) -> Result<(), StoreError> {
    let t = kind.table();
    let in_scope = if scope.is_some() { "app_id = ?3" } else { "?3 IS NULL" };
    let sql = format!(
        "SELECT {k} FROM {n} WHERE lower(name) = lower(?1) AND {k} <> ?2 AND {in_scope}
           AND NOT EXISTS (SELECT 1 FROM {n} WHERE {k} = ?2 AND lower(name) = lower(?1) AND {in_scope})
         LIMIT 1",
        k = t.key.name,
        n = t.name
    );
    let holder: Option<String> = c
        .query_row(&sql, (title, key, scope), |r| r.get(0))
        .optional()
        .map_err(|e| from_sqlite("checking the name is free", &e))?;
    match holder {
        None => Ok(()),
        Some(holder) => Err(StoreError::Duplicate {
            kind: kind.singular(),
            name: title.to_string(),
            holder,
            scope: if scope.is_some() { " in this app" } else { "" },
        }),
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

    /// Writes a record, in one immediate transaction with (given `who`) its
    /// audit entry and history rows; an app or flow only when its name is
    /// free.
    pub(crate) async fn put(
        &self,
        input: &Input,
        expect: Expect,
        who: Option<&Actor>,
        detail: &str,
    ) -> Result<Record, StoreError> {
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
        let input = input.clone();
        let change = who.map(|who| (who.clone(), detail.to_string()));
        self.run(move |c, site| {
            written(c, site, change, kind, input.key.clone(), |c| {
                if let Some((title, scope)) = input.unique_title() {
                    name_free(c, kind, &input.key, title, scope)?;
                }
                let found = {
                    let mut stmt = c.prepare_cached(&sql).map_err(|e| write_error(kind, &e))?;
                    let mut rows = stmt.query(params_from_iter(params)).map_err(|e| write_error(kind, &e))?;
                    match rows.next().map_err(|e| write_error(kind, &e))? {
                        Some(row) => Some(to_record(kind, row)?),
                        None => None,
                    }
                };
                let record = found.ok_or_else(|| conflict(c, kind, &input.key, expected))?;
                let action = if record.version() == 1 { Action::Create } else { Action::Update };
                Ok((record.clone(), Written { action, version: record.version(), after: Some(record) }))
            })
        })
        .await
    }

    /// Deletes a record, in one immediate transaction with (given `who`) its
    /// audit entry and history rows (an app's flows go with it, and into the
    /// history too).
    pub(crate) async fn delete(
        &self,
        kind: Kind,
        key: &str,
        expect: Expect,
        who: Option<&Actor>,
        detail: &str,
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
        let change = who.map(|who| (who.clone(), detail.to_string()));
        let by = change.as_ref().map(|(who, _)| who.clone());
        self.run(move |c, site| {
            written(c, site, change, kind, key.clone(), |c| {
                // The flows the cascade takes along go into the history too.
                let flows = match (&by, kind) {
                    (Some(_), Kind::App) => {
                        let sql = format!("SELECT {} FROM flows WHERE app_id = ?1", select_list(Kind::Flow.table()));
                        query(c, Kind::Flow, &sql, vec![Value::Text(key.clone())])?
                    }
                    _ => Vec::new(),
                };
                let deleted: Option<i64> = c
                    .query_row(&sql, params_from_iter([Value::Text(key.clone()), expected.clone()]), |r| r.get(0))
                    .optional()
                    .map_err(|e| write_error(kind, &e))?;
                let version = match (deleted, expected) {
                    (Some(v), _) => v,
                    (None, Value::Integer(v)) => return Err(conflict(c, kind, &key, v)),
                    (None, _) => return Err(StoreError::NotFound { kind: kind.as_str(), key: key.clone() }),
                };
                if let Some(who) = &by {
                    for flow in &flows {
                        history::baseline(c, flow)?;
                        let gone = history::Version { action: "delete", version: flow.version(), record: None };
                        history::version(c, site, who, Kind::Flow, flow.key(), &gone, "deleted with its app")?;
                    }
                }
                Ok((version, Written { action: Action::Delete, version, after: None }))
            })
        })
        .await
    }
}

/// What a write did, for its audit entry and history row.
struct Written {
    action: Action,
    version: i64,
    /// The record as written; `None` after a delete.
    after: Option<Record>,
}

/// Runs `write` in an immediate transaction; with a change (`who`, a note),
/// records its audit entry and (for kinds that keep one) its history, so all
/// commit or none does.
fn written<T>(
    c: &mut Connection,
    site: &str,
    change: Option<(Actor, String)>,
    kind: Kind,
    key: String,
    write: impl FnOnce(&Connection) -> Result<(T, Written), StoreError>,
) -> Result<T, StoreError> {
    let ctx = "writing with its audit entry";
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| from_sqlite(ctx, &e))?;
    let before = match (&change, kind.keeps_history()) {
        (Some(_), true) => {
            let t = kind.table();
            let sql = format!("SELECT {} FROM {} WHERE {} = ?1", select_list(t), t.name, t.key.name);
            query(&tx, kind, &sql, vec![Value::Text(key.clone())])?.pop()
        }
        _ => None,
    };
    let (out, w) = write(&tx)?;
    if let Some((who, detail)) = change {
        let audit = NewAudit {
            actor: who.clone(),
            action: w.action,
            resource: kind.as_str().to_string(),
            key: key.clone(),
            version: Some(w.version),
            detail: detail.clone(),
        };
        audit::insert(&tx, site, &audit)?;
        if kind.keeps_history() {
            if let Some(before) = &before {
                history::baseline(&tx, before)?;
            }
            let version = history::Version { action: w.action.as_str(), version: w.version, record: w.after.as_ref() };
            history::version(&tx, site, &who, kind, &key, &version, &detail)?;
        }
    }
    tx.commit().map_err(|e| from_sqlite(ctx, &e))?;
    Ok(out)
}

fn opt(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::Text)
}
