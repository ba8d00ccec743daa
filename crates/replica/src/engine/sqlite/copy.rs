//! The initial copy (`onetimecopy`) between SQLite files, with the rules of the
//! PostgreSQL engine (`crate::copy`): 1 empties each target table and copies it
//! from the first source; 2 fills only empty tables — for a sync of several
//! sources without targets, each empty table from the one source that has rows
//! (several with rows is an error), and 1 is refused there.
//!
//! One transaction per file, like a run: `BEGIN IMMEDIATE` and the no-capture
//! flag, so copied rows are not shipped back as changes.

use super::catalog::quoted;
use super::{Node, Prepared};
use crate::catalog::TableInfo;
use crate::error::{ReplicaError, StatementContext};
use dugong_config::OneTimeCopy;
use dugong_core::quote_ident;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Statement};

/// Does the sync's initial copy, if it has one. Blocking.
pub fn initial_copy(p: &Prepared) -> Result<(), ReplicaError> {
    let Some(mode) = crate::copy::copy_mode(&p.sync, !p.tables.is_empty())? else {
        return Ok(());
    };
    for node in &p.nodes {
        node.conn
            .execute_batch("BEGIN IMMEDIATE; INSERT OR IGNORE INTO dugong_applying (id) VALUES (1);")
            .on_db(node.id, || "starting the initial copy".into())?;
    }
    let result = copy_tables(p, mode);
    if result.is_ok() {
        for node in &p.nodes {
            if let Err(e) = node
                .conn
                .execute_batch("DELETE FROM dugong_applying; COMMIT")
                .on_db(node.id, || "committing the initial copy".into())
            {
                super::run::rollback_all(p);
                return Err(e);
            }
        }
        return Ok(());
    }
    super::run::rollback_all(p);
    result
}

fn copy_tables(p: &Prepared, mode: OneTimeCopy) -> Result<(), ReplicaError> {
    let sync = &p.sync;
    for table in &p.tables {
        let (from, into): (&Node, Vec<&Node>) = if sync.targets.is_empty() {
            let with_rows = p.nodes.iter().map(|n| has_rows(n, table)).collect::<Result<Vec<bool>, _>>()?;
            match crate::copy::fill_source(sync.index, &table.name.to_string(), &p.nodes, |n| n.id, &with_rows)? {
                Some(from) => (from, p.nodes.iter().filter(|n| n.id != from.id).collect()),
                None => continue,
            }
        } else {
            let source = p.nodes.iter().find(|n| n.id == sync.sources[0]).expect("the first source is a node");
            if mode == OneTimeCopy::EmptyOnly && !has_rows(source, table)? {
                continue;
            }
            let mut into = Vec::new();
            for n in p.nodes.iter().filter(|n| !n.source) {
                if mode == OneTimeCopy::Full || !has_rows(n, table)? {
                    into.push(n);
                }
            }
            (source, into)
        };
        if !into.is_empty() {
            copy_table(from, &into, table, mode == OneTimeCopy::Full)?;
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
