//! Initial copy (`onetimecopy`): 1 empties each target table and copies it from
//! the first source; 2 fills only empty tables. For a sync of several sources
//! without targets, mode 2 fills each empty table from the one source that has
//! rows (several with rows is an error) and mode 1 is refused — Bucardo silently
//! copies nothing there; Dugong never does nothing silently.

use crate::apply::{CopyFormat, RowCounter};
use crate::catalog::TableInfo;
use crate::error::{ReplicaError, StatementContext};
use crate::prepare::{Node, Prepared};
use bytes::Bytes;
use dugong_config::OneTimeCopy;
use dugong_core::quote_ident;
use futures_util::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// Where a long copy reports its progress for `dugong status`: a connection
/// outside the copy's transactions, written at most once a second.
pub struct StatusReporter {
    pub client: tokio_postgres::Client,
    pub sync: String,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl StatusReporter {
    pub fn new(client: tokio_postgres::Client, sync: String) -> StatusReporter {
        StatusReporter { client, sync, last: std::sync::Mutex::new(None) }
    }

    async fn report(&self, state: String, force: bool) {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if !force && last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let _ = self
            .client
            .execute(
                "INSERT INTO dugong.sync_state (sync, state) VALUES ($1, $2)
                 ON CONFLICT (sync) DO UPDATE SET state = $2, updated_at = now()",
                &[&self.sync, &state],
            )
            .await;
    }
}

/// Does the sync's initial copy, if it has one. Interrupted by `shutdown`, it
/// rolls back: targets keep what they had.
pub async fn initial_copy(
    p: &mut Prepared,
    progress: bool,
    shutdown: &CancellationToken,
    reporter: Option<&StatusReporter>,
) -> Result<(), ReplicaError> {
    let Some(mode) = copy_mode(&p.sync, !p.tables.is_empty())? else {
        return Ok(());
    };
    let result = tokio::select! {
        r = copy_tables(p, mode, progress, reporter) => r,
        _ = shutdown.cancelled() => Err(ReplicaError::Config("initial copy interrupted by shutdown; rolled back".into())),
    };
    match result {
        Ok(()) => {
            for n in &p.nodes {
                n.client.batch_execute("COMMIT").await.on_db(n.id, || "committing the initial copy".into())?;
            }
            Ok(())
        }
        Err(e) => {
            crate::run::rollback_all(p).await;
            Err(e)
        }
    }
}

async fn copy_tables(
    p: &Prepared,
    mode: OneTimeCopy,
    progress: bool,
    reporter: Option<&StatusReporter>,
) -> Result<(), ReplicaError> {
    for n in &p.nodes {
        n.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL session_replication_role = replica")
            .await
            .on_db(n.id, || "starting the initial copy".into())?;
    }
    let sync = &p.sync;
    for table in &p.tables {
        let (from, into): (&Node, Vec<&Node>) = if sync.targets.is_empty() {
            // Several masters: the one that has rows fills the empty ones.
            // Tables that have rows everywhere (a restart after the copy) are done.
            let mut with_rows = Vec::new();
            for n in &p.nodes {
                with_rows.push(has_rows(n, table).await?);
            }
            match fill_source(sync.index, &table.name.to_string(), &p.nodes, |n| n.id, &with_rows)? {
                Some(from) => (from, p.nodes.iter().filter(|n| n.id != from.id).collect()),
                None => continue,
            }
        } else {
            let source = p.nodes.iter().find(|n| n.id == sync.sources[0]).expect("first source is a node");
            if mode == OneTimeCopy::EmptyOnly && !has_rows(source, table).await? {
                continue;
            }
            let mut into = Vec::new();
            for n in p.nodes.iter().filter(|n| !n.source) {
                if mode == OneTimeCopy::Full || !has_rows(n, table).await? {
                    into.push(n);
                }
            }
            (source, into)
        };
        if into.is_empty() {
            continue;
        }
        copy_table(from, &into, table, p.copy_format(table), mode == OneTimeCopy::Full, progress, reporter).await?;
    }
    Ok(())
}

/// The sync's initial copy mode, `None` when there is nothing to copy; refuses mode 1 between
/// masters only (it would empty tables that hold the only copy of their rows).
pub(crate) fn copy_mode(sync: &dugong_config::Sync, has_tables: bool) -> Result<Option<OneTimeCopy>, ReplicaError> {
    let mode = sync.onetimecopy;
    if mode == OneTimeCopy::None || !has_tables {
        return Ok(None);
    }
    if mode == OneTimeCopy::Full && sync.targets.is_empty() && sync.sources.len() > 1 {
        return Err(ReplicaError::Config(format!(
            "syncs[{}].onetimecopy: 1 empties every target table and copies it from a source, but {} has {} sources and no targets; use onetimecopy 2 to fill empty tables from the one source that has rows, or copy first with a one-way sync (\"sources\": [0], \"targets\": [1], \"onetimecopy\": 1)",
            sync.index,
            sync.name,
            sync.sources.len()
        )));
    }
    Ok(Some(mode))
}

/// Mode 2 between masters: the one database whose table has rows (`with_rows`, per node) fills
/// the empty ones. `None` when there is nothing to do (empty everywhere, or rows everywhere: a
/// restart after the copy); an error naming the databases when several have rows.
pub(crate) fn fill_source<'a, N>(
    sync_index: usize,
    table: &str,
    nodes: &'a [N],
    id: impl Fn(&N) -> dugong_core::DbId,
    with_rows: &[bool],
) -> Result<Option<&'a N>, ReplicaError> {
    let full: Vec<&N> = nodes.iter().zip(with_rows).filter(|(_, rows)| **rows).map(|(n, _)| n).collect();
    match full.len() {
        0 => Ok(None),
        n if n == nodes.len() => Ok(None),
        1 => Ok(Some(full[0])),
        _ => {
            let names: Vec<String> = full.iter().map(|n| id(n).to_string()).collect();
            Err(ReplicaError::Config(format!(
                "syncs[{sync_index}].onetimecopy: 2 fills empty tables from the one source that has rows, but table {table} is empty somewhere and has rows on {}; empty it on all but one, or use a one-way sync with onetimecopy 1",
                names.join(" and ")
            )))
        }
    }
}

async fn has_rows(n: &Node, table: &TableInfo) -> Result<bool, ReplicaError> {
    let row = n
        .client
        .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", table.name.quoted()), &[])
        .await
        .on_db(n.id, || format!("looking into {}", table.name))?;
    Ok(row.get(0))
}

/// Streams one table from `from` into every database of `into`.
async fn copy_table(
    from: &Node,
    into: &[&Node],
    table: &TableInfo,
    format: CopyFormat,
    empty_first: bool,
    progress: bool,
    reporter: Option<&StatusReporter>,
) -> Result<(), ReplicaError> {
    let cols = table.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
    let estimate: f32 = from
        .client
        .query_one(
            "SELECT greatest(reltuples, 0)::float4 FROM pg_class WHERE oid = $1::text::regclass",
            &[&table.name.quoted()],
        )
        .await
        .on_db(from.id, || format!("estimating the size of {}", table.name))?
        .get(0);
    let bar = progress.then(|| {
        let bar = ProgressBar::new(estimate as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("copying {} from {}", table.name, from.id));
        bar
    });
    let mut sinks = Vec::new();
    for n in into {
        if empty_first {
            n.client
                .execute(&format!("DELETE FROM {}", table.name.quoted()), &[])
                .await
                .on_db(n.id, || format!("emptying {} for the initial copy", table.name))?;
        }
        let sink = n
            .client
            .copy_in::<_, Bytes>(&format!("COPY {} ({cols}) FROM STDIN{}", table.name.quoted(), format.options()))
            .await
            .on_db(n.id, || format!("copying into {}", table.name))?;
        sinks.push((n.id, Box::pin(sink)));
    }
    let stream = from
        .client
        .copy_out(&format!("COPY (SELECT {cols} FROM {}) TO STDOUT{}", table.name.quoted(), format.options()))
        .await
        .on_db(from.id, || format!("copying out of {}", table.name))?;
    futures_util::pin_mut!(stream);
    let mut counter = RowCounter::new(format);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.on_db(from.id, || format!("copying out of {}", table.name))?;
        counter.saw(&chunk);
        let rows = counter.rows;
        for (id, sink) in sinks.iter_mut() {
            sink.feed(chunk.clone()).await.on_db(*id, || format!("copying into {}", table.name))?;
        }
        if let Some(r) = reporter {
            r.report(format!("Copying {} from {}: {rows} of ~{} rows", table.name, from.id, estimate as u64), false)
                .await;
        }
        if let Some(bar) = &bar {
            if rows > bar.length().unwrap_or(0) {
                bar.set_length(rows);
            }
            bar.set_position(rows);
        }
    }
    for (id, mut sink) in sinks {
        sink.as_mut().finish().await.on_db(id, || format!("copying into {}", table.name))?;
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    let targets: Vec<String> = into.iter().map(|n| n.id.to_string()).collect();
    let rows = counter.rows;
    tracing::info!(table = %table.name, from = %from.id, into = %targets.join(","), rows, "initial copy done");
    Ok(())
}
