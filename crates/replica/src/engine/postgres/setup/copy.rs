//! Copying every table's rows from the live site into the new ones, online:
//! the live site is read in one REPEATABLE READ snapshot (every table as of
//! one moment, so foreign keys hold), each new site is written in one
//! transaction with `session_replication_role = replica` (its capture
//! triggers and foreign-key checks do not fire: nothing is shipped back).
//! Capture was installed on the live site before the snapshot was taken, so
//! what the application writes during the copy is in its change log and
//! shipped afterwards; a row that is both in the snapshot and in the change
//! log is shipped again, which is idempotent.

use super::super::format::{CopyFormat, RowCounter};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::TableInfo;
use crate::setup::progress::CopyProgress;
use bytes::{Bytes, BytesMut};
use dugong_core::DbId;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::Client;

/// The size of the COPY messages sent to the new sites.
const CHUNK: usize = 64 * 1024;

/// Opens the live site's snapshot and counts the rows to copy.
pub(crate) async fn begin_snapshot(origin: &Client, id: DbId, tables: &[TableInfo]) -> Result<u64, ReplicaError> {
    origin
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .on_db(id, || "opening the copy's snapshot".into())?;
    let mut total = 0u64;
    for t in tables {
        let n: i64 = origin
            .query_one(&format!("SELECT count(*) FROM ONLY {}", t.name.quoted()), &[])
            .await
            .on_db(id, || format!("counting the rows of {}", t.name))?
            .get(0);
        total += n as u64;
    }
    Ok(total)
}

/// Opens each new site's copy transaction; `empty_first` (`--force`) deletes
/// the rows the sync's tables hold there.
pub(crate) async fn begin_targets(
    targets: &[(DbId, &Client)],
    tables: &[TableInfo],
    empty_first: bool,
) -> Result<(), ReplicaError> {
    for (id, client) in targets {
        client
            .batch_execute("BEGIN; SET LOCAL session_replication_role = replica")
            .await
            .on_db(*id, || "starting the copy transaction".into())?;
        if empty_first {
            for t in tables {
                client
                    .execute(&format!("DELETE FROM ONLY {}", t.name.quoted()), &[])
                    .await
                    .on_db(*id, || format!("emptying {} (--force)", t.name))?;
            }
        }
    }
    Ok(())
}

/// Streams one table out of the snapshot into every new site at once;
/// returns the rows copied.
pub(crate) async fn table(
    origin: (DbId, &Client),
    targets: &[(DbId, &Client)],
    table: &TableInfo,
    format: CopyFormat,
    progress: &mut CopyProgress,
) -> Result<u64, ReplicaError> {
    let cols = super::super::rows::columns(table);
    let qt = table.name.quoted();
    let in_sql = format!("COPY {qt} ({cols}) FROM STDIN{}", format.options());
    let mut sinks = Vec::with_capacity(targets.len());
    for (id, client) in targets {
        let sink = client.copy_in::<_, Bytes>(&in_sql).await.on_db(*id, || format!("copying into {}", table.name))?;
        sinks.push((*id, Box::pin(sink)));
    }
    let (from, client) = origin;
    let stream = client
        .copy_out(&format!("COPY (SELECT {cols} FROM ONLY {qt}) TO STDOUT{}", format.options()))
        .await
        .on_db(from, || format!("copying out of {}", table.name))?;
    futures_util::pin_mut!(stream);
    progress.table(&table.name.display_name());
    let mut counter = RowCounter::new(format);
    let mut reported = 0u64;
    let mut pending = BytesMut::with_capacity(CHUNK + 4096);
    loop {
        let message = stream.next().await.transpose().on_db(from, || format!("copying out of {}", table.name))?;
        if let Some(m) = &message {
            counter.saw(m);
            pending.extend_from_slice(m);
        }
        if pending.len() >= CHUNK || (message.is_none() && !pending.is_empty()) {
            let chunk = pending.split().freeze();
            for (id, sink) in sinks.iter_mut() {
                sink.feed(chunk.clone()).await.on_db(*id, || format!("copying into {}", table.name))?;
            }
            progress.add(counter.rows - reported);
            reported = counter.rows;
        }
        if message.is_none() {
            break;
        }
    }
    for (id, mut sink) in sinks {
        sink.as_mut().finish().await.on_db(id, || format!("copying into {}", table.name))?;
    }
    Ok(counter.rows)
}
