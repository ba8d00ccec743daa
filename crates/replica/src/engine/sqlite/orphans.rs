//! Looking for foreign-key orphans in SQLite files: rows of a replicated table
//! whose parent, in another replicated table, is gone (`PRAGMA
//! foreign_key_check`). Runs apply with foreign keys off (rows of related
//! tables arrive in any order), so a parent deleted in one file while a child
//! was inserted for it in another leaves the child orphaned everywhere. The
//! daemon looks now and then; each orphan is logged once as a conflict of
//! kind foreign key.

use super::catalog::{quoted, MAIN};
use super::conflicts::row_json;
use super::node::Files;
use super::record;
use super::value::text;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::SyncPlan;
use crate::record::conflict::Orphan;
use dugong_core::{quote_ident, TableName};
use serde_json::value::RawValue;

/// At most this many orphans per table and file are logged per look.
const PER_TABLE: usize = 100;

/// Looks for orphans in every file and logs the new ones as conflicts in
/// every file. Returns the orphans found.
pub fn check(files: &Files, plan: &SyncPlan) -> Result<Vec<Orphan>, ReplicaError> {
    let mut found: Vec<Orphan> = Vec::new();
    let replicated = |name: &str| plan.tables.iter().find(|t| t.name.name == name);
    for node in &files.nodes {
        let ctx = || "looking for foreign-key orphans".to_string();
        for table in &plan.tables {
            // (rowid, parent table, which foreign key)
            let violations: Vec<(i64, String, i64)> = {
                let mut stmt = node
                    .conn
                    .prepare(&format!("PRAGMA foreign_key_check({})", quote_ident(&table.name.name)))
                    .on_db(node.id, ctx)?;
                let rows = stmt.query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?))).on_db(node.id, ctx)?;
                rows.filter_map(Result::ok).take(PER_TABLE).collect()
            };
            for (rowid, parent, fk) in violations {
                let Some(parent) = replicated(&parent) else { continue };
                let columns: Vec<String> = {
                    let mut stmt = node
                        .conn
                        .prepare(&format!(
                            "SELECT \"from\" FROM pragma_foreign_key_list({}) WHERE id = ?1 ORDER BY seq",
                            dugong_core::quote_literal(&table.name.name)
                        ))
                        .on_db(node.id, ctx)?;
                    let rows = stmt.query_map([fk], |r| r.get(0)).on_db(node.id, ctx)?;
                    rows.collect::<Result<_, _>>().on_db(node.id, ctx)?
                };
                let wanted: Vec<String> =
                    table.key.iter().map(|c| c.name.clone()).chain(columns.iter().cloned()).collect();
                let list: Vec<String> = wanted.iter().map(|c| quote_ident(c)).collect();
                let sql = format!(
                    "SELECT {}, {} FROM {} WHERE rowid = ?1",
                    row_json(&table.columns),
                    list.join(", "),
                    quoted(&table.name)
                );
                let (row, values): (String, Vec<String>) = node
                    .conn
                    .query_row(&sql, [rowid], |r| {
                        let values = (0..wanted.len()).map(|i| r.get_ref(i + 1).map(text)).collect::<Result<_, _>>()?;
                        Ok((r.get(0)?, values))
                    })
                    .on_db(node.id, ctx)?;
                let (key, parent_key) = values.split_at(table.key.len());
                if found.iter().any(|o| o.table == table.name && o.key == key) {
                    continue;
                }
                found.push(Orphan {
                    db: node.id,
                    table: table.name.clone(),
                    key: key.to_vec(),
                    row: RawValue::from_string(row).ok(),
                    parent: TableName::new(MAIN, parent.name.name.clone()),
                    parent_key: parent_key.to_vec(),
                });
            }
        }
    }
    if !found.is_empty() {
        let conflicts: Vec<_> = found.iter().map(|o| o.conflict(plan.name())).collect();
        record::log_conflicts(files, plan, &conflicts)?;
    }
    Ok(found)
}
