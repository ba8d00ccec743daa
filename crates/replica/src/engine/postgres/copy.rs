//! The initial copy (`onetimecopy`) on PostgreSQL, as `crate::plan::copy`
//! routes each table: every database in one transaction with
//! `session_replication_role = replica` (copied rows are not shipped back as
//! changes), rows streamed with COPY from the source into every target at once,
//! with a progress bar on a terminal and progress in `dugong status`.

use super::connect;
use super::format::{CopyFormat, RowCounter};
use super::node::rollback_all;
use super::node::{Node, Postgres};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::copy::{self, copy_mode};
use crate::plan::{SyncPlan, TableInfo};
use bytes::Bytes;
use dugong_config::OneTimeCopy;
use dugong_core::{quote_ident, DbId, TableName};
use futures_util::future::try_join_all;
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
/// rolls back: targets keep what they had. Progress goes to the first
/// database's state through a connection of its own: the copy's transactions
/// are not visible until they commit.
pub async fn initial_copy(
    plan: &SyncPlan,
    pg: &Postgres,
    progress: bool,
    shutdown: &CancellationToken,
    recopy: &[String],
) -> Result<(), ReplicaError> {
    let Some(mode) = copy_mode(&plan.sync, !plan.tables.is_empty())? else {
        return Ok(());
    };
    let reporter = match connect::connect(&pg.nodes[0].database, "dugong replicate").await {
        Ok(c) => Some(StatusReporter::new(c, plan.name().to_string())),
        Err(_) => None,
    };
    let result = tokio::select! {
        r = copy_tables(plan, pg, mode, progress, reporter.as_ref(), recopy) => r,
        _ = shutdown.cancelled() => Err(ReplicaError::Config("initial copy interrupted by shutdown; rolled back".into())),
    };
    match result {
        Ok(()) => {
            for n in &pg.nodes {
                n.client.batch_execute("COMMIT").await.on_db(n.id, || "committing the initial copy".into())?;
            }
            Ok(())
        }
        Err(e) => {
            rollback_all(pg).await;
            Err(e)
        }
    }
}

async fn copy_tables(
    plan: &SyncPlan,
    pg: &Postgres,
    mode: OneTimeCopy,
    progress: bool,
    reporter: Option<&StatusReporter>,
    recopy: &[String],
) -> Result<(), ReplicaError> {
    for n in &pg.nodes {
        n.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL session_replication_role = replica")
            .await
            .on_db(n.id, || "starting the initial copy".into())?;
    }
    let sync = plan.name().as_str();
    let done: Vec<TableName> = try_join_all(pg.nodes.iter().map(|n| copied(n, sync))).await?.concat();
    let dbs: Vec<DbId> = pg.nodes.iter().map(|n| n.id).collect();
    for table in plan.tables.iter().filter(|t| copy::wanted(&t.name, &done, recopy)) {
        let with_rows = try_join_all(pg.nodes.iter().map(|n| has_rows(n, table))).await?;
        let route = copy::route(&plan.sync, mode, &table.name, &dbs, &with_rows)?;
        if let Some(route) = &route {
            let into: Vec<&Node> = route.into.iter().map(|id| pg.node(*id)).collect();
            let format = pg.copy_format(table);
            copy_table(pg.node(route.from), &into, table, format, route.empty_first, progress, reporter).await?;
        }
        // Looked at, copied or not: never again (in the copy's transactions).
        let source = route.map(|r| r.from.to_string());
        try_join_all(pg.nodes.iter().map(|n| {
            let source = &source;
            async move {
                n.client
                    .execute(
                        "INSERT INTO dugong.copied (sync, table_schema, table_name, source) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (sync, table_schema, table_name) DO UPDATE SET copied_at = now(), source = excluded.source",
                        &[&sync, &table.name.schema, &table.name.name, source],
                    )
                    .await
                    .on_db(n.id, || format!("recording the initial copy of {}", table.name))
            }
        }))
        .await?;
    }
    Ok(())
}

/// The tables the sync's initial copy has looked at, as `n` records them.
async fn copied(n: &Node, sync: &str) -> Result<Vec<TableName>, ReplicaError> {
    let rows = n
        .client
        .query("SELECT table_schema, table_name FROM dugong.copied WHERE sync = $1", &[&sync])
        .await
        .on_db(n.id, || "reading which tables were copied".into())?;
    Ok(rows.iter().map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))).collect())
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
