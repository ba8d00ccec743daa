//! `dugong compare` on SQLite files, through the shared report and merge
//! (`crate::compare`). Each file is read once per table: row count and an
//! order-independent checksum (a sum of 60-bit slices of each row's md5); only
//! when those differ are the rows' key and row hashes sorted and merged to
//! name the differing keys. Rows are hashed from their stored values (storage
//! class and bytes), columns in name order; nothing is written to the files.

use super::node::blocking;
use super::value::{encode, text};
use super::{catalog, open, path_of};
use crate::diff::merge::{self, Entry};
use crate::diff::{empty, fill_differences, held, RowCount, TableComparison, Uncompared};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{Selection, TableInfo};
use dugong_config::{Config, Sync};
use dugong_core::{quote_ident, DbId};
use md5::{Digest, Md5};
use rusqlite::{Connection, Row};

/// Compares the tables of a SQLite sync across its files.
pub(crate) async fn compare_tables(
    config: &Config,
    sync: &Sync,
    ids: &[DbId],
    limit: usize,
) -> Result<Vec<TableComparison>, Uncompared> {
    let mut files = Vec::with_capacity(ids.len());
    for id in ids {
        files.push((*id, path_of(config, *id).map_err(|e| e.to_string())?.to_path_buf()));
    }
    let opened: Vec<(DbId, Result<Connection, ReplicaError>)> =
        blocking(move || Ok(files.iter().map(|(id, path)| (*id, open::open_read_only(*id, path))).collect()))
            .await
            .map_err(|e| e.to_string())?;
    let (mut conns, mut failures) = (Vec::with_capacity(ids.len()), Vec::new());
    for (id, c) in opened {
        match c {
            Ok(c) => conns.push((id, c)),
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        return Err(Uncompared::unreachable(&failures));
    }
    let sync = sync.clone();
    let per_table = blocking(move || {
        let Selection { tables, held: held_tables, .. } = catalog::select(conns.iter().map(|(id, c)| (*id, c)), &sync)?;
        let mut out = Vec::with_capacity(tables.len() + held_tables.len());
        out.extend(held_tables.iter().map(|h| (held(h), None)));
        for table in &tables {
            let sums: Vec<(i64, u128)> =
                conns.iter().map(|(id, c)| checksum(c, *id, table)).collect::<Result<_, _>>()?;
            let mut cmp = empty(table, sums.iter().all(|s| *s == sums[0]));
            cmp.rows = conns
                .iter()
                .zip(&sums)
                .map(|((id, _), (n, _))| RowCount { database: id.to_string(), rows: *n })
                .collect();
            let entries = if cmp.identical {
                None
            } else {
                Some(conns.iter().map(|(id, c)| entries(c, *id, table)).collect::<Result<Vec<_>, _>>()?)
            };
            out.push((cmp, entries));
        }
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())?;
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut out = Vec::with_capacity(per_table.len());
    for (mut cmp, entries) in per_table {
        if let Some(entries) = entries {
            let streams: Vec<_> = entries
                .into_iter()
                .map(|e| futures_util::stream::iter(e.into_iter().map(Ok::<Entry, ReplicaError>)))
                .collect();
            let diff = merge::diff(streams, limit).await.map_err(|e| e.to_string())?;
            fill_differences(&mut cmp, diff, &names);
        }
        out.push(cmp);
    }
    Ok(out)
}

/// Columns in name order, so column order on disk never matters.
fn sorted_columns(table: &TableInfo) -> Vec<String> {
    let mut names: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    names.sort_unstable();
    names
}

/// Walks every row: `f(row encoded, row)`, the row's columns in [`sorted_columns`] order.
fn each_row(
    conn: &Connection,
    db: DbId,
    table: &TableInfo,
    mut f: impl FnMut(&[u8], &Row<'_>) -> rusqlite::Result<()>,
) -> Result<(), ReplicaError> {
    let cols = sorted_columns(table);
    let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let sql = format!("SELECT {} FROM {}", list.join(", "), catalog::quoted(&table.name));
    let ctx = || format!("reading {}", table.name);
    let mut stmt = conn.prepare(&sql).on_db(db, ctx)?;
    let mut rows = stmt.query([]).on_db(db, ctx)?;
    let mut row_buf = Vec::new();
    while let Some(r) = rows.next().on_db(db, ctx)? {
        row_buf.clear();
        for i in 0..cols.len() {
            encode(r.get_ref(i).on_db(db, ctx)?, &mut row_buf);
        }
        f(&row_buf, r).on_db(db, ctx)?;
    }
    Ok(())
}

/// Row count and the sum of the first 60 bits of each row's md5.
fn checksum(conn: &Connection, db: DbId, table: &TableInfo) -> Result<(i64, u128), ReplicaError> {
    let (mut n, mut sum) = (0i64, 0u128);
    each_row(conn, db, table, |row, _| {
        let h = Md5::digest(row);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        sum = sum.wrapping_add(u128::from(u64::from_be_bytes(first) >> 4));
        n += 1;
        Ok(())
    })?;
    Ok((n, sum))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every row as (key hash, row hash, key), ordered by key hash for the merge.
fn entries(conn: &Connection, db: DbId, table: &TableInfo) -> Result<Vec<Entry>, ReplicaError> {
    let cols = sorted_columns(table);
    let key_at: Vec<usize> =
        table.key.iter().map(|k| cols.iter().position(|c| *c == k.name).expect("key columns are columns")).collect();
    let mut out = Vec::new();
    let mut key_buf = Vec::new();
    each_row(conn, db, table, |row, r| {
        key_buf.clear();
        let mut key = Vec::with_capacity(key_at.len());
        for &i in &key_at {
            let v = r.get_ref(i)?;
            encode(v, &mut key_buf);
            key.push(text(v));
        }
        out.push(Entry { key_hash: hex(&Md5::digest(&key_buf)), row_hash: hex(&Md5::digest(row)), key });
        Ok(())
    })?;
    out.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    Ok(out)
}
