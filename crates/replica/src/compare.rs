//! `dugong compare`: proves (or disproves) that every synced table holds the
//! same rows on every database of its sync.
//!
//! Per table, each database first computes its row count and an
//! order-independent checksum (a sum of 60-bit slices of each row's md5) —
//! nothing but two numbers crosses the network. Only when those differ does
//! each database stream `(md5 of key, md5 of row, key)` ordered by the key's
//! md5, and `merge` joins the streams to name the keys that are missing or
//! differ: the first `limit` of them and the totals, keys only (never other
//! column values). Memory stays constant whatever the table size.
//!
//! Rows are compared as PostgreSQL prints them, with the session settings every
//! Dugong connection uses (UTC, ISO dates, full float precision, hex bytea), so
//! equal values print equally on every server. Tables that change while they
//! are compared can show transient differences: compare when writes are quiet.

pub(crate) mod merge;
mod render;

use crate::catalog::{self, TableInfo};
use crate::error::{describe_pg, ReplicaError, StatementContext};
use crate::prepare;
use dugong_config::{Config, Sync};
use dugong_core::{quote_ident, DbId};
use futures_util::future::{join_all, try_join_all};
use futures_util::StreamExt;
use serde::Serialize;
use tokio_postgres::Client;

pub use render::render_text;

/// How many differing keys each table lists by default.
pub const DEFAULT_LIMIT: usize = 10;

/// The comparison of every shown sync.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// Every compared table is identical on every database.
    pub identical: bool,
    /// Some sync could not be compared (see its `error`).
    pub errors: bool,
    pub syncs: Vec<SyncComparison>,
}

impl CompareReport {
    /// 0 when everything is identical, 1 when something differs, 2 when
    /// something could not be compared.
    pub fn exit_code(&self) -> u8 {
        if self.errors {
            2
        } else if !self.identical {
            1
        } else {
            0
        }
    }
}

/// One sync's tables, compared across its databases.
#[derive(Debug, Clone, Serialize)]
pub struct SyncComparison {
    pub name: String,
    pub databases: Vec<String>,
    /// Why the sync could not be compared (an unreachable database…).
    pub error: Option<String>,
    pub tables: Vec<TableComparison>,
}

/// One table across the databases of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct TableComparison {
    /// `schema.name`.
    pub table: String,
    pub identical: bool,
    pub key_columns: Vec<String>,
    /// Row count per database.
    pub rows: Vec<RowCount>,
    /// Keys missing per database (only databases missing some).
    pub missing: Vec<MissingCount>,
    /// Keys present on several databases with different values.
    pub differing: u64,
    /// Keys with any difference (missing somewhere, or differing).
    pub different_keys: u64,
    /// The first differing keys, at most the limit.
    pub keys: Vec<KeyDifference>,
    /// A schema difference (the table is then not compared row by row), or a
    /// note when checksums differed but no key did.
    pub problem: Option<String>,
}

/// Rows of a table on one database.
#[derive(Debug, Clone, Serialize)]
pub struct RowCount {
    pub database: String,
    pub rows: i64,
}

/// How many keys one database lacks.
#[derive(Debug, Clone, Serialize)]
pub struct MissingCount {
    pub database: String,
    pub keys: u64,
}

/// One differing key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyDifference {
    /// The key's columns as text, in key order.
    pub key: Vec<String>,
    /// Databases that do not have the key.
    pub missing_on: Vec<String>,
    /// When the databases that have it disagree: groups of databases holding
    /// the same values. Empty when they agree.
    pub differs: Vec<Vec<String>>,
}

/// Compares every sync of `config`, or only the one named `only`. An unknown
/// sync name is an error; an unreachable database is reported in its sync.
pub async fn compare(config: &Config, only: Option<&str>, limit: usize) -> Result<CompareReport, ReplicaError> {
    let syncs: Vec<&Sync> = match only {
        Some(name) => vec![config.sync(name).ok_or_else(|| {
            let names: Vec<&str> = config.syncs.iter().map(|s| s.name.as_str()).collect();
            ReplicaError::Config(format!(
                "no sync named {name:?} in {}; the syncs are: {}",
                config.path.display(),
                names.join(", ")
            ))
        })?],
        None => config.syncs.iter().collect(),
    };
    let mut out = Vec::with_capacity(syncs.len());
    for sync in syncs {
        out.push(compare_sync(config, sync, limit).await);
    }
    Ok(CompareReport {
        identical: out.iter().all(|s| s.error.is_none() && s.tables.iter().all(|t| t.identical)),
        errors: out.iter().any(|s| s.error.is_some()),
        syncs: out,
    })
}

/// Compares one sync's tables; any failure lands in `error`.
pub async fn compare_sync(config: &Config, sync: &Sync, limit: usize) -> SyncComparison {
    let ids = sync.databases();
    let mut result = SyncComparison {
        name: sync.name.to_string(),
        databases: ids.iter().map(ToString::to_string).collect(),
        error: None,
        tables: Vec::new(),
    };
    let compared = if crate::engine::is_sqlite(config, sync) {
        crate::engine::sqlite::compare::compare_tables(config, sync, &ids, limit).await
    } else {
        compare_tables(config, sync, &ids, limit).await
    };
    match compared {
        Ok(tables) => result.tables = tables,
        Err(e) => result.error = Some(e),
    }
    result
}

async fn compare_tables(
    config: &Config,
    sync: &Sync,
    ids: &[DbId],
    limit: usize,
) -> Result<Vec<TableComparison>, String> {
    // All at once, so dead databases cost one connect timeout in total.
    let connected = join_all(ids.iter().map(|id| prepare::connect_as(config, *id, "dugong compare"))).await;
    let mut clients = Vec::with_capacity(ids.len());
    let mut failures = Vec::new();
    for (id, c) in ids.iter().zip(connected) {
        match c {
            Ok(c) => clients.push((*id, c)),
            Err(e) => failures.push(describe(&e)),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    let (reference, first) = (&clients[0].0, &clients[0].1);
    let field = format!("syncs[{}].tables", sync.index);
    let (tables, _) =
        catalog::select_tables(first, *reference, &sync.tables, &field).await.map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    for (id, client) in &clients[1..] {
        problems.extend(catalog::check_same_schema(client, *id, *reference, &tables).await.map_err(|e| e.to_string())?);
    }
    let mut out = Vec::with_capacity(tables.len());
    for table in &tables {
        let mine: Vec<&str> = problems.iter().filter(|p| is_about(p, table)).map(String::as_str).collect();
        if mine.is_empty() {
            out.push(compare_table(&clients, table, limit).await.map_err(|e| e.to_string())?);
        } else {
            out.push(TableComparison {
                problem: Some(format!("schema differs: {}", mine.join("; "))),
                ..empty(table, false)
            });
        }
    }
    Ok(out)
}

/// An error for the report; an unreachable database also says why (the
/// driver's error alone only says "error connecting to server").
fn describe(err: &ReplicaError) -> String {
    match err {
        ReplicaError::Unreachable { db, target, source } => {
            format!("{db} is unreachable ({target}): {}", describe_pg(source))
        }
        other => other.to_string(),
    }
}

/// Whether a schema problem of `check_same_schema` names this table.
pub(crate) fn is_about(problem: &str, table: &TableInfo) -> bool {
    let prefix = format!("table {}", table.name);
    problem.strip_prefix(&prefix).is_some_and(|rest| rest.starts_with([' ', ':']))
}

pub(crate) fn empty(table: &TableInfo, identical: bool) -> TableComparison {
    TableComparison {
        table: table.name.display_name(),
        identical,
        key_columns: table.key.iter().map(|c| c.name.clone()).collect(),
        rows: Vec::new(),
        missing: Vec::new(),
        differing: 0,
        different_keys: 0,
        keys: Vec::new(),
        problem: None,
    }
}

/// The row as text, columns in name order so column order on disk never matters.
fn row_text(table: &TableInfo) -> String {
    let mut names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let cols: Vec<String> = names.into_iter().map(quote_ident).collect();
    format!("ROW({})::text", cols.join(", "))
}

/// Compares one table whose schema agrees on every database.
pub async fn compare_table(
    clients: &[(DbId, Client)],
    table: &TableInfo,
    limit: usize,
) -> Result<TableComparison, ReplicaError> {
    let qt = table.name.quoted();
    let row = row_text(table);
    let sums_sql = format!(
        "SELECT count(*), coalesce(sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint::numeric), 0)::text FROM ONLY {qt}"
    );
    let sums = try_join_all(clients.iter().map(|(id, c)| {
        let sql = &sums_sql;
        async move {
            let r = c.query_one(sql.as_str(), &[]).await.on_db(*id, || format!("counting {}", table.name))?;
            Ok::<_, ReplicaError>((r.get::<_, i64>(0), r.get::<_, String>(1)))
        }
    }))
    .await?;
    let mut out = empty(table, sums.iter().all(|s| *s == sums[0]));
    out.rows =
        clients.iter().zip(&sums).map(|((id, _), (n, _))| RowCount { database: id.to_string(), rows: *n }).collect();
    if out.identical {
        return Ok(out);
    }
    let keys: Vec<String> = table.key.iter().map(|c| quote_ident(&c.name)).collect();
    let key_texts: Vec<String> = keys.iter().map(|k| format!("{k}::text")).collect();
    let sql = format!(
        "SELECT md5(ROW({})::text) COLLATE \"C\", md5({row}), ARRAY[{}]::text[] FROM ONLY {qt} ORDER BY 1",
        keys.join(", "),
        key_texts.join(", ")
    );
    let streams = try_join_all(clients.iter().map(|(id, c)| {
        let sql = &sql;
        async move {
            let rows = c
                .query_raw(sql.as_str(), [0i32; 0])
                .await
                .on_db(*id, || format!("reading the keys of {}", table.name))?;
            let id = *id;
            let name = table.name.clone();
            Ok::<_, ReplicaError>(Box::pin(rows.map(move |r| {
                r.map(|r| merge::Entry { key_hash: r.get(0), row_hash: r.get(1), key: r.get(2) })
                    .on_db(id, || format!("reading the keys of {name}"))
            })))
        }
    }))
    .await?;
    let diff = merge::diff(streams, limit).await?;
    let names: Vec<String> = clients.iter().map(|(id, _)| id.to_string()).collect();
    fill_differences(&mut out, diff, &names);
    Ok(out)
}

/// Puts what the merge found into a table's comparison; `names` are the
/// databases in stream order.
pub(crate) fn fill_differences(out: &mut TableComparison, diff: merge::Diff, names: &[String]) {
    let name = |i: usize| names[i].clone();
    out.missing = diff
        .missing
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| MissingCount { database: name(i), keys: *n })
        .collect();
    out.differing = diff.differing;
    out.different_keys = diff.total;
    out.keys = diff
        .found
        .into_iter()
        .map(|f| KeyDifference {
            key: f.key,
            missing_on: f.missing_on.into_iter().map(name).collect(),
            differs: f.groups.into_iter().map(|g| g.into_iter().map(name).collect()).collect(),
        })
        .collect();
    if diff.total == 0 {
        out.problem =
            Some("checksums differ but no differing key was found (rows changed while comparing?); run again".into());
    }
}
