//! Backlog catch-up, and the hardware's ceiling for applying rows.
//!
//! Catch-up: with the replicator stopped, site 0 commits the backlog (its capture
//! keeps recording); both sites checkpoint; the clock starts when the replicator
//! is started and stops when site 1 has every row.
//!
//! Ceiling: the same rows, copied out of site 0, bulk-inserted with one `COPY …
//! FROM STDIN` in one transaction into a fresh `events` table (same primary key
//! and index) on site 1, timed from BEGIN to COMMIT.

use crate::cluster::Sites;
use crate::options::Scale;
use crate::replicators::Replicators;
use crate::schema::{self, COPY_DB};
use crate::stats::Sample;
use crate::system::System;
use crate::workloads::arrival::{self, Arrival, Expected};
use crate::workloads::rows;
use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use std::time::Instant;

/// Catch-up figures.
#[derive(Debug, Clone)]
pub struct CatchUp {
    /// Rows per second from the replicator's start until site 1 had them all.
    pub rate: Sample,
    /// The rows' tag on site 0 (for the ceiling).
    pub tag: String,
    pub rows: u64,
}

/// Stops the running system, writes the backlog, starts the system again and
/// times the catch-up. The system is running afterwards.
pub async fn run(
    sites: &Sites,
    replicators: &mut Replicators,
    system: System,
    scale: &Scale,
    rep: usize,
) -> anyhow::Result<CatchUp> {
    let db = system.db();
    replicators.stop(sites, system).await?;
    let tag = rows::tag(system, rep, "backlog", 0);
    let written = rows::write(sites, 0, db, &tag, scale.backlog_rows, scale.txn_rows, scale.writers).await?;
    schema::checkpoint(sites).await?;
    let expected = Expected { site: 1, tag: tag.clone(), rows: written.rows, last_ids: written.last_ids };
    let started = Instant::now();
    replicators.start(sites, system).await?;
    let arrival = arrival::wait(sites, db, &[expected], started + scale.deadline).await?;
    let rate = match arrival {
        Arrival::Complete(at) => Sample::complete(written.rows as f64 / (at - started).as_secs_f64().max(1e-9)),
        Arrival::TimedOut { seen } => Sample::incomplete(seen as f64 / started.elapsed().as_secs_f64().max(1e-9)),
    };
    Ok(CatchUp { rate, tag, rows: written.rows })
}

/// The COPY ceiling and the same COPY sent one flushed message per row.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    /// Rows per second of one COPY in 64 KiB chunks (as psql sends).
    pub coalesced: Sample,
    /// Rows per second of the same COPY with one flushed CopyData message per
    /// row, as COPY OUT yields them: what forwarding rows one by one would cost
    /// (`dugong replicate` coalesces them into 64 KiB messages).
    pub per_row: Sample,
}

/// The COPY ceiling for the rows tagged `tag` in `db` on site 0: rows per second
/// of one COPY into a fresh table on site 1, in one transaction.
pub async fn ceiling(sites: &Sites, db: &str, tag: &str) -> anyhow::Result<Ceiling> {
    let source = sites.connect(0, db).await?;
    let sql = format!(
        "COPY (SELECT id, client, kind, payload, at FROM events WHERE client = {}) TO STDOUT",
        quote_literal(tag)
    );
    let stream = source.copy_out(sql.as_str()).await.context("copying the backlog out of site 0")?;
    let per_row: Vec<Bytes> = stream.try_collect().await.context("copying the backlog out of site 0")?;
    let rows: usize = per_row.iter().map(|c| c.iter().filter(|b| **b == b'\n').count()).sum();
    let coalesced = coalesce(&per_row);
    Ok(Ceiling {
        coalesced: copy_into_fresh_table(sites, rows, coalesced).await?,
        per_row: copy_into_fresh_table(sites, rows, per_row).await?,
    })
}

/// Rows per second of one COPY of `chunks` into a fresh `events` table on site
/// 1, from BEGIN to COMMIT, each chunk sent (and flushed) as it comes.
async fn copy_into_fresh_table(sites: &Sites, rows: usize, chunks: Vec<Bytes>) -> anyhow::Result<Sample> {
    sites.exec(1, COPY_DB, &format!("DROP TABLE IF EXISTS events, flows; {}", schema::TABLES)).await?;
    sites.exec(1, "postgres", "CHECKPOINT").await?;
    let target = sites.connect(1, COPY_DB).await?;
    let started = Instant::now();
    target.batch_execute("BEGIN").await.context("starting the ceiling's transaction")?;
    let sink = target
        .copy_in::<_, Bytes>("COPY events (id, client, kind, payload, at) FROM STDIN")
        .await
        .context("starting the ceiling's COPY")?;
    futures_util::pin_mut!(sink);
    for chunk in chunks {
        sink.send(chunk).await.context("sending the ceiling's rows")?;
    }
    sink.finish().await.context("finishing the ceiling's COPY")?;
    target.batch_execute("COMMIT").await.context("committing the ceiling's rows")?;
    Ok(Sample::complete(rows as f64 / started.elapsed().as_secs_f64().max(1e-9)))
}

/// COPY OUT yields one message per row; send them the way psql does, in
/// chunks of about 64 KiB, so the ceiling measures the server, not our framing.
fn coalesce(rows: &[Bytes]) -> Vec<Bytes> {
    const CHUNK: usize = 64 * 1024;
    let mut chunks = Vec::new();
    let mut current = Vec::with_capacity(CHUNK + 1024);
    for row in rows {
        current.extend_from_slice(row);
        if current.len() >= CHUNK {
            chunks.push(Bytes::from(std::mem::replace(&mut current, Vec::with_capacity(CHUNK + 1024))));
        }
    }
    if !current.is_empty() {
        chunks.push(Bytes::from(current));
    }
    chunks
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
