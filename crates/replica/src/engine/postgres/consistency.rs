//! The background consistency check on PostgreSQL (`crate::consistency`
//! says what it promises): one chunk of one table per tick, in primary-key
//! order, compared on every database of the sync through `compare`'s sums and
//! key streams limited to the chunk's key range.

use super::catalog;
use super::compare::{key_streams, sums};
use super::connect::connect_as;
use super::rows;
use crate::consistency::suspects::{Hashes, Suspects};
use crate::diff::merge::Merge;
use crate::error::{ReplicaError, StatementContext};
use crate::metrics as m;
use crate::plan::TableInfo;
use crate::read::TextKey;
use crate::record::Divergence;
use dugong_config::{Config, Sync};
use dugong_core::{quote_literal, DbId, TableName};
use futures_util::future::join_all;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio_postgres::Client;

/// The check's connections and where it is in each table.
pub struct Checker {
    config: Arc<Config>,
    sync: Sync,
    chunk_rows: usize,
    clients: Option<Vec<(DbId, Client)>>,
    /// Per table: the last key of the previous chunk (`None`: from the start).
    cursors: HashMap<TableName, Option<TextKey>>,
    suspects: HashMap<TableName, Suspects>,
    /// The table the next chunk is taken from, by position.
    next_table: usize,
    /// Tables this checker has walked to the end at least once.
    passed: HashSet<TableName>,
    /// What was last written to `dugong.divergence` per table.
    recorded: HashMap<TableName, usize>,
}

/// One table's result of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub table: TableName,
    /// Rows known to differ now.
    pub known: usize,
    /// The whole table has been compared at least once by this checker, so
    /// `known` covers all of it (rows recorded by an earlier replicator are
    /// cleared only then).
    pub full_pass: bool,
}

impl Checker {
    pub fn new(config: Arc<Config>, sync: Sync, chunk_rows: usize) -> Checker {
        Checker {
            config,
            sync,
            chunk_rows,
            clients: None,
            cursors: HashMap::new(),
            suspects: HashMap::new(),
            next_table: 0,
            passed: HashSet::new(),
            recorded: HashMap::new(),
        }
    }

    /// Drops the connections (after a failure): the next tick connects anew.
    pub fn disconnect(&mut self) {
        self.clients = None;
    }

    /// Checks the suspects and known keys of every table again, then one
    /// chunk of the next table. Returns every table's count of rows known to
    /// differ.
    pub async fn tick(&mut self) -> Result<Vec<TableCheck>, ReplicaError> {
        if self.clients.is_none() {
            let ids = self.sync.databases();
            let all =
                join_all(ids.iter().map(|id| connect_as(&self.config, *id, "dugong replicate (consistency)"))).await;
            self.clients = Some(ids.into_iter().zip(all).map(|(id, c)| c.map(|c| (id, c))).collect::<Result<_, _>>()?);
        }
        let clients = self.clients.as_ref().expect("connected");
        let refs: Vec<(DbId, &Client)> = clients.iter().map(|(id, c)| (*id, c)).collect();
        let selection = catalog::select(&refs, &self.sync).await?;
        // Tables whose schema differs are the replicator's to report.
        // (they are held, not in `tables`).
        let tables: Vec<&TableInfo> = selection.tables.iter().collect();
        self.suspects.retain(|name, _| tables.iter().any(|t| &t.name == name));
        let chunk_of = tables.get(self.next_table % tables.len().max(1)).map(|t| t.name.clone());
        let mut counts = Vec::with_capacity(tables.len());
        for table in &tables {
            let found = if Some(&table.name) == chunk_of.as_ref() {
                let cursor = self.cursors.get(&table.name).cloned().flatten();
                let (found, next) = chunk(clients, table, cursor, self.chunk_rows, self.sync.name.as_str()).await?;
                if next.is_none() {
                    self.next_table += 1;
                    self.passed.insert(table.name.clone());
                }
                self.cursors.insert(table.name.clone(), next);
                found
            } else {
                Vec::new()
            };
            let state = self.suspects.entry(table.name.clone()).or_default();
            let mut recheck = state.to_recheck();
            recheck.extend(found.iter().map(|(k, _)| k.clone()));
            let now = hashes(clients, table, &recheck).await?;
            let mut moving = HashSet::new();
            for (id, c) in clients {
                moving.extend(rows::in_flight(c, *id, self.sync.name.as_str(), table, &recheck).await?);
            }
            state.update(&now, &moving, found);
            counts.push(TableCheck {
                table: table.name.clone(),
                known: state.known(),
                full_pass: self.passed.contains(&table.name),
            });
        }
        Ok(counts)
    }

    /// Writes what changed since the last call to `dugong.divergence` on
    /// every database, so `dugong status` reports it (and an operator learns
    /// of rows that differ without watching metrics): a table with rows known
    /// to differ is recorded with their count; a record is removed once a
    /// whole pass over the table found none.
    pub async fn record(&mut self, checks: &[TableCheck]) -> Result<(), ReplicaError> {
        let Some(clients) = self.clients.as_ref() else { return Ok(()) };
        let mut set: Vec<(&TableName, i64)> = Vec::new();
        let mut clear: Vec<&TableName> = Vec::new();
        for c in checks {
            let before = self.recorded.get(&c.table).copied();
            if c.known > 0 && before != Some(c.known) {
                set.push((&c.table, c.known as i64));
            } else if c.known == 0 && c.full_pass && before != Some(0) {
                clear.push(&c.table);
            }
        }
        if set.is_empty() && clear.is_empty() {
            return Ok(());
        }
        let sync = self.sync.name.as_str();
        let set_schemas: Vec<&str> = set.iter().map(|(t, _)| t.schema.as_str()).collect();
        let set_names: Vec<&str> = set.iter().map(|(t, _)| t.name.as_str()).collect();
        let set_rows: Vec<i64> = set.iter().map(|(_, rows)| *rows).collect();
        let clear_schemas: Vec<&str> = clear.iter().map(|t| t.schema.as_str()).collect();
        let clear_names: Vec<&str> = clear.iter().map(|t| t.name.as_str()).collect();
        for (id, c) in clients {
            let ctx = || "recording the rows the consistency check found different".to_string();
            c.execute(
                "INSERT INTO dugong.divergence (sync, table_schema, table_name, rows)
                 SELECT $1, s, n, r FROM unnest($2::text[], $3::text[], $4::int8[]) AS x(s, n, r)
                 ON CONFLICT (sync, table_schema, table_name)
                 DO UPDATE SET rows = EXCLUDED.rows, checked_at = now()",
                &[&sync, &set_schemas, &set_names, &set_rows],
            )
            .await
            .on_db(*id, ctx)?;
            c.execute(
                "DELETE FROM dugong.divergence d USING unnest($2::text[], $3::text[]) AS x(s, n)
                 WHERE d.sync = $1 AND d.table_schema = x.s AND d.table_name = x.n",
                &[&sync, &clear_schemas, &clear_names],
            )
            .await
            .on_db(*id, ctx)?;
        }
        for (t, rows) in set {
            self.recorded.insert(t.clone(), rows as usize);
        }
        for t in clear {
            self.recorded.insert(t.clone(), 0);
            tracing::info!(sync = %sync, table = %t, "no rows differ any more");
        }
        Ok(())
    }
}

/// Rows recorded as differing, per table of `sync`, merged over the
/// databases that answer (the largest count, the earliest finding): what
/// `dugong status` reports. A database without the record table (a
/// replicator of an earlier version installed it) has none.
pub async fn recorded(clients: &[(DbId, &Client)], sync: &str) -> Vec<Divergence> {
    let mut out: Vec<Divergence> = Vec::new();
    for (_, c) in clients {
        let Ok(rows) = c
            .query(
                "SELECT table_schema, table_name, rows, (extract(epoch FROM found_at) * 1000000)::int8 FROM dugong.divergence
                 WHERE sync = $1",
                &[&sync],
            )
            .await
        else {
            continue;
        };
        for r in rows {
            let table = TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)).display_name();
            let rows: i64 = r.get(2);
            let found_at = chrono::DateTime::from_timestamp_micros(r.get(3)).unwrap_or_default();
            match out.iter_mut().find(|d| d.table == table) {
                Some(d) => {
                    d.rows = d.rows.max(rows);
                    d.found_at = d.found_at.min(found_at);
                }
                None => out.push(Divergence { table, rows, found_at }),
            }
        }
    }
    out.sort_by(|a, b| a.table.cmp(&b.table));
    out
}

/// Every database's row hash for each of `keys`, in the sync's order.
async fn hashes(
    clients: &[(DbId, Client)],
    table: &TableInfo,
    keys: &[TextKey],
) -> Result<HashMap<TextKey, Hashes>, ReplicaError> {
    let mut out: HashMap<TextKey, Hashes> = keys.iter().map(|k| (k.clone(), vec![None; clients.len()])).collect();
    for (i, (id, c)) in clients.iter().enumerate() {
        for (key, v) in rows::versions(c, *id, table, keys, false, false).await? {
            if let Some(h) = out.get_mut(&key) {
                h[i] = Some(v.hash);
            }
        }
    }
    Ok(out)
}

/// Compares the chunk of `table` after `cursor`: the differing keys with
/// each database's row hash, and the chunk's last key (`None` when the chunk
/// reached the table's end).
async fn chunk(
    clients: &[(DbId, Client)],
    table: &TableInfo,
    cursor: Option<TextKey>,
    rows_per_chunk: usize,
    sync: &str,
) -> Result<(Vec<(TextKey, Hashes)>, Option<TextKey>), ReplicaError> {
    let (reference, client) = &clients[0];
    let keys = rows::key_columns(table);
    let after = cursor.as_ref().map(|k| format!("({keys}) > ({})", literal_key(table, k)));
    let upper: Option<TextKey> = client
        .query_opt(
            &format!(
                "SELECT {} FROM ONLY {} AS r{} ORDER BY {keys} OFFSET {} LIMIT 1",
                rows::key_text(table, "r"),
                table.name.quoted(),
                after.as_ref().map(|a| format!(" WHERE {a}")).unwrap_or_default(),
                rows_per_chunk.saturating_sub(1)
            ),
            &[],
        )
        .await
        .on_db(*reference, || format!("finding the next chunk of {}", table.name))?
        .map(|r| r.get(0));
    let mut range: Vec<String> = after.into_iter().collect();
    if let Some(u) = &upper {
        range.push(format!("({keys}) <= ({})", literal_key(table, u)));
    }
    let filter = range.join(" AND ");
    let sums = sums(clients, table, &filter).await?;
    let checked: i64 = sums.iter().map(|(n, _)| *n).max().unwrap_or(0);
    metrics::counter!(m::ROWS_CHECKED, "sync" => sync.to_string()).increment(checked as u64);
    if sums.iter().all(|s| *s == sums[0]) {
        return Ok((Vec::new(), upper));
    }
    let mut merge = Merge::start(key_streams(clients, table, &filter).await?).await?;
    let mut found = Vec::new();
    while let Some(f) = merge.next_difference().await? {
        found.push(f.key);
    }
    let now = hashes(clients, table, &found).await?;
    Ok((now.into_iter().collect(), upper))
}

/// A key as SQL literals cast to the key columns' types.
fn literal_key(table: &TableInfo, key: &TextKey) -> String {
    key.iter()
        .zip(&table.key)
        .map(|(v, c)| format!("{}::{}", quote_literal(v), c.type_sql))
        .collect::<Vec<_>>()
        .join(", ")
}
