//! The initial copy (`onetimecopy`) between SQLite files, as
//! `crate::plan::copy` routes each table. One transaction per file, like a
//! run: `BEGIN IMMEDIATE` and the no-capture flag, so copied rows are not
//! shipped back as changes.

use super::catalog::quoted;
use super::node::{Files, Node};
use super::record::rollback_all;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::copy;
use crate::plan::{SyncPlan, TableInfo};
use dugong_config::OneTimeCopy;
use dugong_core::{quote_ident, DbId, TableName};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Statement};

/// Does the sync's initial copy, if it has one. Blocking.
pub fn initial_copy(files: &Files, plan: &SyncPlan, recopy: &[String]) -> Result<(), ReplicaError> {
    let Some(mode) = copy::copy_mode(&plan.sync, !plan.tables.is_empty())? else {
        return Ok(());
    };
    for node in &files.nodes {
        node.conn
            .execute_batch("BEGIN IMMEDIATE; INSERT OR IGNORE INTO dugong_applying (id) VALUES (1);")
            .on_db(node.id, || "starting the initial copy".into())?;
    }
    let result = copy_tables(files, plan, mode, recopy);
    if result.is_ok() {
        for node in &files.nodes {
            if let Err(e) = node
                .conn
                .execute_batch("DELETE FROM dugong_applying; COMMIT")
                .on_db(node.id, || "committing the initial copy".into())
            {
                rollback_all(files);
                return Err(e);
            }
        }
        return Ok(());
    }
    rollback_all(files);
    result
}

fn copy_tables(files: &Files, plan: &SyncPlan, mode: OneTimeCopy, recopy: &[String]) -> Result<(), ReplicaError> {
    let sync = plan.name().as_str();
    let mut done = Vec::new();
    for n in &files.nodes {
        let mut stmt = n
            .conn
            .prepare("SELECT table_name FROM dugong_copied WHERE sync = ?1")
            .on_db(n.id, || "reading which tables were copied".into())?;
        let names = stmt
            .query_map([sync], |r| r.get::<_, String>(0))
            .on_db(n.id, || "reading which tables were copied".into())?;
        for name in names {
            done.push(TableName::new(
                super::catalog::MAIN,
                name.on_db(n.id, || "reading which tables were copied".into())?,
            ));
        }
    }
    let dbs: Vec<DbId> = files.nodes.iter().map(|n| n.id).collect();
    for table in plan.tables.iter().filter(|t| copy::wanted(&t.name, &done, recopy)) {
        let with_rows = files.nodes.iter().map(|n| has_rows(n, table)).collect::<Result<Vec<bool>, _>>()?;
        let route = copy::route(&plan.sync, mode, &table.name, &dbs, &with_rows)?;
        if let Some(route) = &route {
            let into: Vec<&Node> = route.into.iter().map(|id| files.node(*id)).collect();
            copy_table(files.node(route.from), &into, table, route.empty_first)?;
        }
        // Looked at, copied or not: never again (in the copy's transactions).
        let source = route.map(|r| r.from.to_string());
        for n in &files.nodes {
            n.conn
                .execute(
                    &format!(
                        "INSERT INTO dugong_copied (sync, table_name, copied_at, source) VALUES (?1, ?2, {}, ?3)
                         ON CONFLICT (sync, table_name) DO UPDATE SET copied_at = excluded.copied_at, source = excluded.source",
                        super::capture::NOW_US
                    ),
                    rusqlite::params![sync, table.name.name, source],
                )
                .on_db(n.id, || format!("recording the initial copy of {}", table.name))?;
        }
    }
    Ok(())
}

fn has_rows(n: &Node, table: &TableInfo) -> Result<bool, ReplicaError> {
    n.conn
        .query_row(&format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(&table.name)), [], |r| r.get(0))
        .on_db(n.id, || format!("looking into {}", table.name))
}

fn copy_table(from: &Node, into: &[&Node], table: &TableInfo, empty_first: bool) -> Result<(), ReplicaError> {
    let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let name = quoted(&table.name);
    if empty_first {
        let empty = format!("DELETE FROM {name}");
        for n in into {
            n.conn.execute(&empty, []).on_db(n.id, || format!("emptying {} for the initial copy", table.name))?;
        }
    }
    let insert = format!("INSERT INTO {name} ({}) VALUES ({})", cols.join(", "), marks.join(", "));
    let into_ctx = || format!("copying into {}", table.name);
    let mut inserts: Vec<Statement> =
        into.iter().map(|n| n.conn.prepare(&insert).on_db(n.id, into_ctx)).collect::<Result<_, _>>()?;
    let ctx = || format!("copying out of {}", table.name);
    let mut stmt = from.conn.prepare(&format!("SELECT {} FROM {name}", cols.join(", "))).on_db(from.id, ctx)?;
    let mut rows = stmt.query([]).on_db(from.id, ctx)?;
    let mut count = 0u64;
    while let Some(r) = rows.next().on_db(from.id, ctx)? {
        let values: Vec<Value> =
            (0..cols.len()).map(|i| r.get::<_, Value>(i)).collect::<Result<_, _>>().on_db(from.id, ctx)?;
        for (n, insert) in into.iter().zip(&mut inserts) {
            insert.execute(params_from_iter(values.iter())).on_db(n.id, into_ctx)?;
        }
        count += 1;
    }
    let targets: Vec<String> = into.iter().map(|n| n.id.to_string()).collect();
    tracing::info!(table = %table.name, from = %from.id, into = %targets.join(","), rows = count, "initial copy done");
    Ok(())
}
