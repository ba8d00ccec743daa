//! Apps, flows, settings and contexts on PostgreSQL: one implementation over
//! the [`Table`] descriptors. Every value travels as text and is cast in SQL
//! (`$1::text::uuid`, `value::text`), so no driver type mapping is needed.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::audit::{self, insert_from, literal};
use super::{micros, PgStore};
use crate::audit::{Action, Actor, NewAudit};
use crate::error::{from_pg, from_pg_write, StoreError};
use crate::model::{Column, ColumnType, Expect, Input, Kind, ListQuery, Micros, Page, Record, Table};

/// `dugong_app.<table>`.
fn qualified(table: &Table) -> String {
    format!("dugong_app.{}", table.name)
}

/// A column read as text.
fn read(column: &Column) -> String {
    match column.ty {
        ColumnType::Text => column.name.to_string(),
        ColumnType::Uuid | ColumnType::Json => format!("{}::text", column.name),
    }
}

/// Parameter `$n` cast to the column's type.
fn param(column: &Column, n: usize) -> String {
    match column.ty {
        ColumnType::Text => format!("${n}::text"),
        ColumnType::Uuid => format!("${n}::text::uuid"),
        ColumnType::Json => format!("${n}::text::jsonb"),
    }
}

/// The select list: key, fields, version, updated_at (µs).
fn select_list(table: &Table) -> String {
    let mut cols = vec![read(&table.key)];
    cols.extend(table.fields.iter().map(read));
    cols.push("version".into());
    cols.push(micros("updated_at"));
    cols.join(", ")
}

fn to_record(kind: Kind, row: &Row) -> Result<Record, StoreError> {
    let n = kind.table().fields.len();
    let fields = (1..=n).map(|i| row.get::<_, String>(i)).collect();
    Record::from_row(kind, row.get(0), fields, row.get(n + 1), Micros(row.get(n + 2)))
}

impl PgStore {
    pub(crate) async fn get(&self, kind: Kind, key: &str) -> Result<Option<Record>, StoreError> {
        let t = kind.table();
        let sql =
            format!("SELECT {} FROM {} WHERE {} = {}", select_list(t), qualified(t), t.key.name, param(&t.key, 1));
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a read", &e))?;
        let row = conn.query_opt(&stmt, &[&key]).await.map_err(|e| from_pg(&format!("reading {}", t.name), &e))?;
        row.map(|r| to_record(kind, &r)).transpose()
    }

    pub(crate) async fn get_many(&self, kind: Kind, keys: &[String]) -> Result<Vec<Record>, StoreError> {
        let t = kind.table();
        let any = match t.key.ty {
            ColumnType::Uuid => "$1::text[]::uuid[]",
            _ => "$1::text[]",
        };
        let sql = format!("SELECT {} FROM {} WHERE {} = ANY({any})", select_list(t), qualified(t), t.key.name);
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a read", &e))?;
        let rows = conn.query(&stmt, &[&keys]).await.map_err(|e| from_pg(&format!("reading {}", t.name), &e))?;
        rows.iter().map(|r| to_record(kind, r)).collect()
    }

    pub(crate) async fn list(&self, kind: Kind, query: &ListQuery) -> Result<Page<Record>, StoreError> {
        let t = kind.table();
        let mut sql = format!(
            "SELECT {} FROM {} WHERE ($1::text IS NULL OR {} > {})",
            select_list(t),
            qualified(t),
            t.key.name,
            param(&t.key, 1)
        );
        let fetch = i64::from(query.limit) + 1;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&query.after, &fetch];
        if kind == Kind::Flow {
            sql.push_str(" AND ($3::text IS NULL OR app_id = $3::text::uuid)");
            params.push(&query.app_id);
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT $2", t.key.name));
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a list", &e))?;
        let rows = conn.query(&stmt, &params).await.map_err(|e| from_pg(&format!("listing {}", t.name), &e))?;
        let mut items = rows.iter().map(|r| to_record(kind, r)).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() as i64 == fetch {
            items.pop();
            items.last().map(|r| r.key().to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Writes a record; with `who`, its audit entry in the same statement.
    pub(crate) async fn put(&self, input: &Input, expect: Expect, who: Option<&Actor>) -> Result<Record, StoreError> {
        let kind = input.kind;
        let t = kind.table();
        let names: Vec<&str> = t.fields.iter().map(|c| c.name).collect();
        let values: Vec<String> = t.fields.iter().enumerate().map(|(i, c)| param(c, i + 2)).collect();
        let (table, key, select) = (qualified(t), t.key.name, select_list(t));
        let key_param = param(&t.key, 1);
        let sql = match expect {
            Expect::Any | Expect::Absent => {
                let on_conflict = if expect == Expect::Any {
                    let set: Vec<String> = names.iter().map(|n| format!("{n} = EXCLUDED.{n}")).collect();
                    format!("DO UPDATE SET {}, version = {table}.version + 1, updated_at = now()", set.join(", "))
                } else {
                    "DO NOTHING".into()
                };
                format!(
                    "INSERT INTO {table} ({key}, {}, version, updated_at) VALUES ({key_param}, {}, 1, now())
                     ON CONFLICT ({key}) {on_conflict} RETURNING {select}",
                    names.join(", "),
                    values.join(", ")
                )
            }
            Expect::Version(_) => {
                let set: Vec<String> = names.iter().zip(&values).map(|(n, v)| format!("{n} = {v}")).collect();
                let n = t.fields.len() + 2;
                format!(
                    "UPDATE {table} SET {}, version = version + 1, updated_at = now()
                     WHERE {key} = {key_param} AND version = ${n} RETURNING {select}",
                    set.join(", ")
                )
            }
        };
        let expected = expect.number();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&input.key];
        params.extend(input.fields.iter().map(|f| f as &(dyn ToSql + Sync)));
        if let Expect::Version(_) = expect {
            params.push(&expected);
        }
        let entry = who.map(|who| audit::Params::new(&self.site, &entry_of(who, kind, &input.key)));
        let sql = match &entry {
            Some(entry) => {
                let action = format!(
                    "CASE WHEN w.version = 1 THEN {} ELSE {} END",
                    literal(Action::Create),
                    literal(Action::Update)
                );
                let insert = insert_from("w", params.len() + 1, &action, "w.version");
                params.extend(entry.refs());
                format!("WITH w AS ({sql}), a AS ({insert}) SELECT * FROM w")
            }
            None => sql,
        };
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a write", &e))?;
        let row = conn.query_opt(&stmt, &params).await.map_err(|e| write_error(kind, &e))?;
        match row {
            Some(row) => to_record(kind, &row),
            None => Err(self.conflict(kind, &input.key, expected).await),
        }
    }

    /// Deletes a record; with `who`, its audit entry in the same statement.
    pub(crate) async fn delete(
        &self,
        kind: Kind,
        key: &str,
        expect: Expect,
        who: Option<&Actor>,
    ) -> Result<i64, StoreError> {
        let t = kind.table();
        let mut sql = format!(
            "DELETE FROM {} WHERE {} = {} AND ($2::int8 IS NULL OR version = $2) RETURNING version",
            qualified(t),
            t.key.name,
            param(&t.key, 1)
        );
        let expected = match expect {
            Expect::Version(v) => Some(v),
            _ => None,
        };
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key, &expected];
        let entry = who.map(|who| audit::Params::new(&self.site, &entry_of(who, kind, key)));
        if let Some(entry) = &entry {
            let insert = insert_from("w", 3, &literal(Action::Delete), "w.version");
            params.extend(entry.refs());
            sql = format!("WITH w AS ({sql}), a AS ({insert}) SELECT version FROM w");
        }
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a delete", &e))?;
        let row = conn.query_opt(&stmt, &params).await.map_err(|e| write_error(kind, &e))?;
        match row {
            Some(row) => Ok(row.get(0)),
            None => match expected {
                None => Err(StoreError::NotFound { kind: kind.as_str(), key: key.to_string() }),
                Some(v) => Err(self.conflict(kind, key, v).await),
            },
        }
    }

    /// The error for a write whose expectation failed: not found, or a
    /// conflict naming the current version.
    async fn conflict(&self, kind: Kind, key: &str, expected: i64) -> StoreError {
        let current = match self.get(kind, key).await {
            Ok(found) => found.map_or(0, |r| r.version()),
            Err(e) => return e,
        };
        if current == 0 && expected > 0 {
            return StoreError::NotFound { kind: kind.as_str(), key: key.to_string() };
        }
        StoreError::Conflict { kind: kind.as_str(), key: key.to_string(), expected, current }
    }
}

/// The entry of a change to `kind`/`key` by `who` (its action and version come
/// from the statement's result).
fn entry_of(who: &Actor, kind: Kind, key: &str) -> NewAudit {
    NewAudit {
        actor: who.clone(),
        action: Action::Update,
        resource: kind.as_str().to_string(),
        key: key.to_string(),
        version: None,
        detail: String::new(),
    }
}

/// A failed write: a flow whose app does not exist is the client's mistake.
fn write_error(kind: Kind, err: &tokio_postgres::Error) -> StoreError {
    if err.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) && kind == Kind::Flow {
        return StoreError::invalid("app_id", "no app with this id");
    }
    from_pg_write(&format!("writing {}", kind.as_str()), err)
}
