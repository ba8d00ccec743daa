//! Applying a run's table plans on SQLite: fetch each winning row from the
//! file that won it, then on every other file delete the keys whose winner
//! has no row and upsert the rest, in that file's run transaction (whose
//! `dugong_applying` row keeps the capture triggers quiet, so nothing echoes
//! back).

use super::catalog::quoted;
use super::node::{Files, Node};
use super::value::SqliteKey;
use crate::apply::{TablePlan, Totals};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{SyncPlan, TableInfo};
use dugong_core::{quote_ident, DbId};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, CachedStatement, OptionalExtension, Params};
use std::time::Instant;

/// A decided key: its winner and the winning row (`None`: the key is gone).
type Decided = (SqliteKey, DbId, Option<Vec<Value>>);

/// One table's decided keys, with the SQL that writes them (made once per table and run).
struct TableWrites<'a> {
    table: &'a TableInfo,
    delete: String,
    upsert: String,
    rows: Vec<Decided>,
}

/// Applies every plan on every file: the winning rows of each table are read
/// before anything is written; then deletions everywhere but at the winner
/// (a key that moved frees its unique values), then upserts.
pub fn apply_all(files: &Files, plan: &SyncPlan, plans: Vec<TablePlan<SqliteKey>>) -> Result<Totals, ReplicaError> {
    let clock = Instant::now();
    let mut totals = Totals::default();
    let mut writes: Vec<TableWrites> = Vec::with_capacity(plans.len());
    for table_plan in plans {
        let table = &plan.tables[table_plan.table];
        let mut rows = Vec::with_capacity(table_plan.winners.len());
        let fetch = fetch_sql(table);
        let ctx = || format!("reading rows of {}", table.name);
        // One statement per file, prepared (from the connection's cache) when
        // the file first wins a key, and used for all the keys it wins.
        let mut fetches: Vec<Option<CachedStatement>> = files.nodes.iter().map(|_| None).collect();
        for (key, winner) in table_plan.winners {
            let at = files.nodes.iter().position(|n| n.id == winner).expect("every database of a run is a node");
            let stmt = match &mut fetches[at] {
                Some(stmt) => stmt,
                slot => slot.insert(files.nodes[at].conn.prepare_cached(&fetch).on_db(winner, ctx)?),
            };
            let row = stmt
                .query_row(params_from_iter(key.iter()), |r| {
                    (0..table.columns.len()).map(|c| r.get::<_, Value>(c)).collect::<Result<Vec<_>, _>>()
                })
                .optional()
                .on_db(winner, ctx)?;
            totals.inserts += u64::from(row.is_some());
            rows.push((key, winner, row));
        }
        writes.push(TableWrites { table, delete: delete_sql(table), upsert: upsert_sql(table), rows });
    }
    for node in &files.nodes {
        for w in &writes {
            let gone = w.rows.iter().filter(|(_, winner, row)| *winner != node.id && row.is_none());
            totals.deletes +=
                apply_each(node, w.table, &w.delete, gone.map(|(key, _, _)| params_from_iter(key.iter())))?;
        }
        for w in &writes {
            let kept = w.rows.iter().filter(|(_, winner, _)| *winner != node.id).filter_map(|(_, _, row)| row.as_ref());
            apply_each(node, w.table, &w.upsert, kept.map(|values| params_from_iter(values.iter())))?;
        }
    }
    totals.copy_time = clock.elapsed();
    Ok(totals)
}

/// Runs `sql` on `node` once per parameter list; returns the rows it changed.
/// The statement is prepared once, only when there is something to write, and
/// from the connection's cache, so the next run reuses it.
fn apply_each<P: Params>(
    node: &Node,
    table: &TableInfo,
    sql: &str,
    params: impl Iterator<Item = P>,
) -> Result<u64, ReplicaError> {
    let mut params = params.peekable();
    if params.peek().is_none() {
        return Ok(0);
    }
    let ctx = || format!("applying changes to {}", table.name);
    let mut stmt = node.conn.prepare_cached(sql).on_db(node.id, ctx)?;
    let mut changed = 0;
    for p in params {
        changed += stmt.execute(p).on_db(node.id, ctx)? as u64;
    }
    Ok(changed)
}

fn key_match(table: &TableInfo) -> String {
    table
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} IS ?{}", quote_ident(&c.name), i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn column_list(table: &TableInfo) -> String {
    table.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

fn fetch_sql(table: &TableInfo) -> String {
    format!("SELECT {} FROM {} WHERE {}", column_list(table), quoted(&table.name), key_match(table))
}

fn delete_sql(table: &TableInfo) -> String {
    format!("DELETE FROM {} WHERE {}", quoted(&table.name), key_match(table))
}

/// An insert that updates the row in place when its key exists: an
/// application's triggers (a change feed) see an update, as they would on the
/// source.
fn upsert_sql(table: &TableInfo) -> String {
    let placeholders: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
    let keys: Vec<String> = table.key.iter().map(|c| quote_ident(&c.name)).collect();
    let sets: Vec<String> = table
        .columns
        .iter()
        .filter(|c| !table.key.iter().any(|k| k.name == c.name))
        .map(|c| format!("{0} = excluded.{0}", quote_ident(&c.name)))
        .collect();
    let action = if sets.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", sets.join(", ")) };
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {action}",
        quoted(&table.name),
        column_list(table),
        placeholders.join(", "),
        keys.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Column;
    use dugong_core::TableName;

    fn table() -> TableInfo {
        let col = |n: &str| Column { name: n.into(), type_sql: "TEXT".into() };
        TableInfo {
            name: TableName::new("main", "t"),
            columns: vec![col("a"), col("b"), col("v")],
            key: vec![col("a"), col("b")],
            key_constraint: "primary key".into(),
            binary_copy: false,
        }
    }

    #[test]
    fn upserts_update_non_key_columns_in_place() {
        assert_eq!(
            upsert_sql(&table()),
            r#"INSERT INTO "t" ("a", "b", "v") VALUES (?1, ?2, ?3) ON CONFLICT ("a", "b") DO UPDATE SET "v" = excluded."v""#
        );
        assert_eq!(delete_sql(&table()), r#"DELETE FROM "t" WHERE "a" IS ?1 AND "b" IS ?2"#);
    }
}
