//! Apps, flows, settings and contexts on PostgreSQL: one implementation over
//! the [`Table`] descriptors. Every value travels as text and is cast in SQL
//! (`$1::text::uuid`, `value::text`), so no driver type mapping is needed.
//!
//! A write by someone (`who`) records its audit entry and, for kinds that
//! keep one, its history row in the same statement. A write that names an
//! app or flow first takes a lock on that name and checks nobody else has
//! it, in one transaction with the write.

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::audit::{self, insert_from, literal};
use super::history;
use super::{micros, qualified, PgStore};
use crate::audit::{Action, Actor, NewAudit};
use crate::error::{from_pg, from_pg_write, StoreError};
use crate::model::{Column, ColumnType, Expect, Input, Kind, ListQuery, Micros, Page, Record, Table};

/// A column read as text, under its own name.
fn read(column: &Column) -> String {
    match column.ty {
        ColumnType::Text => column.name.to_string(),
        ColumnType::Uuid | ColumnType::Json => format!("{0}::text AS {0}", column.name),
    }
}

/// Parameter `$n` cast to the column's type.
pub(super) fn param(column: &Column, n: usize) -> String {
    match column.ty {
        ColumnType::Text => format!("${n}::text"),
        ColumnType::Uuid => format!("${n}::text::uuid"),
        ColumnType::Json => format!("${n}::text::jsonb"),
    }
}

/// The select list: key, fields, version, updated_at (µs).
pub(super) fn select_list(table: &Table) -> String {
    let mut cols = vec![read(&table.key)];
    cols.extend(table.fields.iter().map(read));
    cols.push("version".into());
    cols.push(format!("{} AS updated_us", micros("updated_at")));
    cols.join(", ")
}

pub(super) fn to_record(kind: Kind, row: &Row) -> Result<Record, StoreError> {
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

    /// Writes a record; with `who`, its audit entry (and history row) in the
    /// same statement, noting `detail` there.
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
        let entry = who.map(|who| audit::Params::new(&self.site, &entry_of(who, kind, &input.key, detail)));
        let sql = match &entry {
            Some(entry) => {
                let action = format!(
                    "CASE WHEN w.version = 1 THEN {} ELSE {} END",
                    literal(Action::Create),
                    literal(Action::Update)
                );
                let first = params.len() + 1;
                let insert = insert_from("w", first, &action, "w.version");
                params.extend(entry.refs());
                let mut ctes = vec![format!("w AS ({sql})"), format!("a AS ({insert})")];
                if kind.keeps_history() {
                    ctes.insert(0, history::before(t, &key_param));
                    ctes.extend(history::written(t, first, &action, false));
                }
                format!("WITH {} SELECT * FROM w", ctes.join(", "))
            }
            None => sql,
        };
        let mut conn = self.conn().await?;
        let row = match input.unique_title() {
            Some((title, scope)) => self.write_named(&mut conn, kind, &input.key, title, scope, &sql, &params).await?,
            None => {
                let stmt = conn.prepare_cached(&sql).await.map_err(|e| from_pg("preparing a write", &e))?;
                conn.query_opt(&stmt, &params).await.map_err(|e| write_error(kind, &e))?
            }
        };
        match row {
            Some(row) => to_record(kind, &row),
            None => Err(self.conflict(kind, &input.key, expected).await),
        }
    }

    /// Runs the write `sql` of an app or flow named `title` (unique among
    /// apps, or among the flows of app `scope`) in a transaction that first
    /// locks the name and checks nobody else holds it. Another site may
    /// still take the same name before the two meet; the console then lists
    /// both.
    #[allow(clippy::too_many_arguments)]
    async fn write_named(
        &self,
        conn: &mut Object,
        kind: Kind,
        key: &str,
        title: &str,
        scope: Option<&str>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let t = kind.table();
        let ctx = "checking the name is free";
        let lock = format!("{}:{}:", t.name, scope.unwrap_or(""));
        let in_scope = match scope {
            Some(_) => "app_id = $3::text::uuid",
            None => "$3::text IS NULL",
        };
        let taken = format!(
            "SELECT {k}::text FROM {table} WHERE lower(name) = lower($1::text) AND {k} <> $2::text::uuid AND {in_scope}
               AND NOT EXISTS (SELECT 1 FROM {table} WHERE {k} = $2::text::uuid AND lower(name) = lower($1::text)
                               AND {in_scope})
             LIMIT 1",
            k = t.key.name,
            table = qualified(t),
        );
        let tx = conn.transaction().await.map_err(|e| from_pg(ctx, &e))?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::text || lower($2::text), 0))", &[&lock, &title])
            .await
            .map_err(|e| from_pg(ctx, &e))?;
        let holder = tx.query_opt(&taken, &[&title, &key, &scope]).await.map_err(|e| from_pg(ctx, &e))?;
        if let Some(holder) = holder {
            return Err(StoreError::Duplicate {
                kind: kind.singular(),
                name: title.to_string(),
                holder: holder.get(0),
                scope: if scope.is_some() { " in this app" } else { "" },
            });
        }
        let stmt = tx.prepare_cached(sql).await.map_err(|e| from_pg("preparing a write", &e))?;
        // Until the commit, a lost connection means nothing was written.
        let row = tx.query_opt(&stmt, params).await.map_err(|e| match fk_error(kind, &e) {
            Some(invalid) => invalid,
            None => from_pg(&format!("writing {}", t.name), &e),
        })?;
        if row.is_some() {
            tx.commit().await.map_err(|e| from_pg_write(&format!("writing {}", t.name), &e))?;
        }
        Ok(row)
    }

    /// Deletes a record; with `who`, its audit entry (and history rows: the
    /// record's, and an app's flows', which go with it) in the same
    /// statement.
    pub(crate) async fn delete(
        &self,
        kind: Kind,
        key: &str,
        expect: Expect,
        who: Option<&Actor>,
        detail: &str,
    ) -> Result<i64, StoreError> {
        let t = kind.table();
        let key_param = param(&t.key, 1);
        let mut sql = format!(
            "DELETE FROM {} WHERE {} = {key_param} AND ($2::int8 IS NULL OR version = $2) RETURNING version",
            qualified(t),
            t.key.name,
        );
        let expected = match expect {
            Expect::Version(v) => Some(v),
            _ => None,
        };
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key, &expected];
        let entry = who.map(|who| audit::Params::new(&self.site, &entry_of(who, kind, key, detail)));
        if let Some(entry) = &entry {
            let insert = insert_from("w", 3, &literal(Action::Delete), "w.version");
            params.extend(entry.refs());
            let mut ctes = vec![format!("w AS ({sql})"), format!("a AS ({insert})")];
            if kind.keeps_history() {
                ctes.insert(0, history::before(t, &key_param));
                ctes.extend(history::written(t, 3, &literal(Action::Delete), true));
            }
            if kind == Kind::App {
                ctes.extend(history::flows_deleted_with_app(3));
            }
            sql = format!("WITH {} SELECT version FROM w", ctes.join(", "));
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
fn entry_of(who: &Actor, kind: Kind, key: &str, detail: &str) -> NewAudit {
    NewAudit {
        actor: who.clone(),
        action: Action::Update,
        resource: kind.as_str().to_string(),
        key: key.to_string(),
        version: None,
        detail: detail.to_string(),
    }
}

/// A flow whose app does not exist is the client's mistake.
fn fk_error(kind: Kind, err: &tokio_postgres::Error) -> Option<StoreError> {
    (err.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) && kind == Kind::Flow)
        .then(|| StoreError::invalid("app_id", "no app with this id"))
}

/// A failed write of one statement.
fn write_error(kind: Kind, err: &tokio_postgres::Error) -> StoreError {
    fk_error(kind, err).unwrap_or_else(|| from_pg_write(&format!("writing {}", kind.as_str()), err))
}
